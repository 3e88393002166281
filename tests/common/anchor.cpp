// Keeps the library non-empty while the helpers are being written.
