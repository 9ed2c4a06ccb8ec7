"""Start and stop ``Cluster`` objects against a Redis that comes and goes; exit 1 if a
``stop()`` takes longer than its deadline. Run as its own process by test_cluster (the
hang it guards against showed outside pytest's loop, within a few rounds).

Usage: python tests/relay/cluster_stop.py ROUNDS SEED WORKDIR
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from collab.relay.cluster import Cluster
from tests.services import RedisProcess

STOP_DEADLINE = 8.0


def _ignore(*_: object) -> None:
    pass


async def main(rounds: int, seed: int, workdir: Path) -> int:
    rng = random.Random(seed)
    server = RedisProcess(workdir)
    await server.start()
    try:
        for i in range(rounds):
            cluster = Cluster(server.url, f"{i:016x}", _ignore, lambda: None, _ignore)
            await cluster.start()
            for k in range(20):
                await cluster.subscribe(f"room{k}")
            await asyncio.sleep(rng.uniform(0, 0.3))
            if rng.random() < 0.5:
                await server.stop()
                await asyncio.sleep(rng.uniform(0, 1))
                await server.start()
                await asyncio.sleep(rng.uniform(0, 1))
            for k in range(5):
                cluster.unsubscribe(f"room{k}")
            for _ in range(50):
                cluster.publish("room7", b"x" * 20)
            # Let the publisher start its pipeline: the cancellation must land inside it.
            for _ in range(rng.randint(1, 3)):
                await asyncio.sleep(0)
            try:
                async with asyncio.timeout(STOP_DEADLINE):
                    await cluster.stop()
            except TimeoutError:
                print(f"round {i}: Cluster.stop() still running after {STOP_DEADLINE} s")
                return 1
    finally:
        await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))))
