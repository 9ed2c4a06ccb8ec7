"""Building blocks of bench/bench.py, the collab load benchmark (client side only).

Nothing here imports collab: the server under test is always a separate process spoken to
over the y-websocket protocol on loopback.
"""
