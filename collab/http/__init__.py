"""The HTTP surface (I/O, aiohttp): one app factory, one leaf of shared state, route modules.

``app`` builds the application and is the only module that imports the route modules
(``websocket``, ``hocuspocus``, ``health``, ``browser``, ``documents``, ``history``,
``tokens``); ``state`` holds the app's keys and ``identify()``, so a route needs nothing
from the factory; ``errors`` turns every error into one JSON answer; ``body`` reads request
bodies within their limits and ``models.parse`` parses them with pydantic models, which
``openapi`` also describes. It may import every layer below
(``relay``, ``history``, ``store``, ``sync``, the leaves), never ``collab.tools``.
"""
