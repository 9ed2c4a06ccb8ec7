"""collab: a real-time collaborative editing server for Yjs that keeps every edit."""

__version__ = "0.1.0"
