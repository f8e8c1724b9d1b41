"""The SMTP front: server, DATA reader, reply constants."""
