"""Tar archives: the upload check (upload), the bounded reader (reader), the cross-OS name
rules (names) and tar responses built from stored blobs (stream)."""
