"""Storage: the database, schema and migrations, records, SQL by concern, blobs, backup."""
