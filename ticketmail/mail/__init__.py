"""Reading a mail: bytes to ParsedMail, charsets, HTML, TNEF, quoted history, bounces."""
