"""The relay: the rooms of one server process and everything that moves their bytes (I/O).

Owns the hub (rooms joined, loaded, drained, unloaded: ``hub``, ``residency``), carrying
out a room's effects (``fanout``), what the hub reads from the store (``persistence``),
each socket's bounded outbound queue and its states (``connection``), what a member may
send (``admission``), keepalive, the Redis relay between nodes (``cluster``, which reads
its subscription through ``subscription``) and what other nodes relay to the rooms here
(``remote``), webhooks, metrics and background tasks. It may
import ``collab.sync``, ``collab.history``, ``collab.store`` and the leaf modules; it never
imports ``collab.http`` or ``collab.tools``, and it never issues SQL itself.
"""
