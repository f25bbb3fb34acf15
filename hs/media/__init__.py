"""Media repository pieces with no database: the file store and the thumbnailer."""
