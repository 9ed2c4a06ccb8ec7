"""The Yjs sync layer."""
