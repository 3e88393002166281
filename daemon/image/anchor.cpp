// Keeps the library non-empty while the area is being built up.
