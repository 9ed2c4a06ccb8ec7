"""The compact text report printed at the end of a run (the JSON summary holds everything)."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]

# header, width, key of the row ("a.b" reaches into a nested summary)
_FANOUT_COLS = (
    ("config", 16, "config"), ("edits/s", 8, "edits_per_s"), ("deliv/s", 8, "deliveries_per_s"),
    ("lost", 6, "lost"), ("echo", 6, "echoes"), ("p50", 6, "latency_ms.p50"),
    ("p95", 6, "latency_ms.p95"), ("p99", 6, "latency_ms.p99"), ("max", 7, "latency_ms.max"),
    ("srvCPU%", 7, "server_cpu_pct"), ("us/dlv", 6, "server_us_per_delivery"),
    ("RSS MB", 6, "server_rss_mb"), ("cliCPU%", 7, "client_cpu_pct"),
    ("lag99", 5, "client_lag_p99_ms"),
)  # fmt: skip
# counters that are zero in a clean run; printed under the table when they are not
_ANOMALIES = (
    "connect_failures", "cross_room", "duplicates", "reencoded", "unrecognized",
    "skipped_edits", "send_failures",
)  # fmt: skip
_LAG_FLAG_MS = 20.0


def _n(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _get(row: dict[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value[part]
    return value


def _fanout(rows: list[dict[str, Any]], cpu_flag: float) -> list[str]:
    out = [
        "fanout (latency ms: send -> receipt at each other client; us/dlv = server CPU "
        "microseconds per delivered update)",
        "  ".join(name.rjust(w) for name, w, _ in _FANOUT_COLS),
    ]
    notes, flagged = [], False
    for r in rows:
        if "error" in r:
            out.append(f"{r['config']:>16}  ERROR {r['error']}")
            continue
        flag = r["client_cpu_pct"] > cpu_flag or (r["client_lag_p99_ms"] or 0) > _LAG_FLAG_MS
        flagged |= flag
        cells = [_n(_get(r, key)).rjust(w) for _, w, key in _FANOUT_COLS]
        cells[0] = (("(!) " if flag else "") + r["config"]).rjust(_FANOUT_COLS[0][1])
        out.append("  ".join(cells))
        odd = {k: r[k] for k in _ANOMALIES if r[k]}
        if r["server_exit"] is not None:
            odd["server_exit"] = r["server_exit"]
        if odd:
            notes.append(f"  {r['config']}: " + ", ".join(f"{k}={v}" for k, v in odd.items()))
    if flagged:
        notes.append(
            f"  (!) client CPU > {cpu_flag:g}% or its loop lag p99 > {_LAG_FLAG_MS:g} ms: "
            "latency includes client queueing; the client may be the bottleneck"
        )
    return out + notes


def _late_join(r: dict[str, Any], cpu_flag: float) -> list[str]:
    if "error" in r:
        return [f"late_join: ERROR {r['error']}"]
    seq, burst = r["sequential_ms"], r["burst_ms"]
    flag = " (!) client-bound?" if r["client_cpu_pct_burst"] > cpu_flag else ""
    return [
        f"late_join ({r['doc_chars']:,} chars, {r['doc_update_bytes'] / 1e3:,.0f} KB update, "
        f"{r['trace_edits']:,} trace edits; connect -> SyncStep2 received, ms)",
        f"  seed {r['seed_ms']:,.0f} ms, server RSS {r['server_rss_mb']} MB "
        f"(+{r['doc_rss_mb']} MB for the doc), step2 {r['step2_bytes'] / 1e3:,.0f} KB",
        f"  sequential x{seq['n']}: p50 {_n(seq['p50'])}  max {_n(seq['max'])}   "
        f"burst x{burst['n']}: p50 {_n(burst['p50'])}  max {_n(burst['max'])}  "
        f"(client CPU {r['client_cpu_pct_burst']}%{flag})",
        f"  verified {r['verified']}/{r['joins']} joins"
        + (
            f", {r['burst_failures']} burst failures {r['burst_errors']}"
            if r["burst_failures"]
            else ""
        ),
    ]


def _connections(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [f"connections: ERROR {r['error']}"]
    return [
        f"connections ({r['requested']:,} idle, one room each, "
        f"{r['small_update_bytes']} B update per room)",
        f"  opened {r['opened']:,} ({r['failures']} failed) in {r['connect_s']} s = "
        f"{r['connects_per_s']:,.0f}/s; handshake p50 {_n(r['handshake_ms']['p50'])} ms, "
        f"push round trip p99 {_n(r['push_rtt_ms']['p99'])} ms",
        f"  server RSS {r['rss_before_mb']} -> {r['rss_open_mb']} MB = "
        f"{_n(r['kb_per_conn'])} KB per connection+room; {r['rss_after_close_mb']} MB "
        "after closing all" + (f"; errors {r['errors']}" if r["errors"] else ""),
    ]


def _storm(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [f"storm: ERROR {r['error']}"]
    back = r["back_ms"]
    every = "not all back" if r["all_back_s"] is None else f"all back {r['all_back_s']} s"
    return [
        f"storm ({r['connected']:,} of {r['clients']:,} clients in {r['rooms']:,} rooms; "
        "SIGTERM, start again; y-websocket's reconnect back-off)",
        f"  {every} after the stop (the old process exited in {r['stop_s']} s, the new one "
        f"listened {r['start_s']} s later); "
        f"per client p50 {_n(back['p50'])} ms, p99 {_n(back['p99'])} ms; "
        f"{r['reconnect_attempts']:,} connect attempts"
        + (f"; errors {r['errors']}" if r["errors"] else ""),
    ]


def render(summary: dict[str, Any], cpu_flag: float) -> str:
    """Render the run summary as plain text."""
    meta = summary["meta"]
    lines = [
        f"collab bench  {meta['started']}  loop={meta['loop']}  cpus={meta['cpus']}  "
        f"pin server={meta['pin_server']} client={meta['pin_client']}",
        f"server: {meta['server_cmd']}",
        f"url: {meta['url_template']}",
    ]
    res = summary["results"]
    if "fanout" in res:
        lines += ["", *_fanout(res["fanout"], cpu_flag)]
    if "late_join" in res:
        lines += ["", *_late_join(res["late_join"], cpu_flag)]
    if "connections" in res:
        lines += ["", *_connections(res["connections"])]
    if "storm" in res:
        lines += ["", *_storm(res["storm"])]
    if summary.get("aborted"):
        lines += ["", f"ABORTED: {summary['aborted']}"]
    return "\n".join(lines)
