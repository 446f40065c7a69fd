"""The results as one PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def draw(payload: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(
        f"Herald benchmark {payload['when']} ({payload['mode']}): "
        f"{payload['machine']['nproc']} cores, {payload['backends']['database']}, "
        f"load before {payload['load_before']}",
        fontsize=10,
    )
    _throughput(axes[0][0], payload)
    _latency(axes[0][1], payload)
    _ingest(axes[0][2], payload)
    _scale_throughput(axes[1][0], payload)
    _scale_latency(axes[1][1], payload)
    _claims(axes[1][2], payload)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _throughput(ax: Any, payload: dict[str, Any]) -> None:
    rows = payload["throughput"]
    labels = [f"{r['webhooks']} wh" for r in rows]
    x = range(len(rows))
    width = 0.27
    ax.bar([i - width for i in x], [r["deliveries_per_s"] for r in rows], width, label="Herald")
    ax.bar(x, [r["baseline_req_per_s"] for r in rows], width, label="bare requests loop")
    naive = payload.get("naive", {}).get("deliveries_per_s", 0)
    ax.bar([i + width for i in x], [naive] * len(rows), width, label="naive RQ job/delivery")
    ax.axhline(1500, color="red", linestyle="--", linewidth=1, label="target 1,500/s")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("deliveries / s")
    ax.set_title(f"1. end-to-end throughput ({payload['workers']} workers)")
    ax.legend(fontsize=7)


def _latency(ax: Any, payload: dict[str, Any]) -> None:
    rows = payload["steady"]
    keys = ["p50", "p95", "p99"]
    width = 0.8 / max(len(rows), 1)
    for n, row in enumerate(rows):
        values = [row["latency_ms"].get(k, 0) for k in keys]
        offset = (n - (len(rows) - 1) / 2) * width
        ax.bar([i + offset for i in range(3)], values, width, label=row["label"])
    ax.axhline(250, color="red", linestyle="--", linewidth=1, label="p99 target 250 ms")
    ax.set_xticks(range(3), keys)
    ax.set_ylabel("publish to arrival, ms")
    ax.set_title("2-3. latency at a steady load; isolation")
    ax.legend(fontsize=7)


def _ingest(ax: Any, payload: dict[str, Any]) -> None:
    rows = payload["ingest"]
    ax.bar([r["mode"] for r in rows], [r["events_per_s"] for r in rows])
    for i, r in enumerate(rows):
        ax.annotate(
            f"{r['requests_per_s']:.0f} req/s\np99 {r['latency_ms'].get('p99', 0):.0f} ms",
            (i, r["events_per_s"]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("events / s")
    ax.set_title("4. ingest through gunicorn")


def _scale_throughput(ax: Any, payload: dict[str, Any]) -> None:
    rows = payload["scale"]["throughput"]
    ax.plot([r["workers"] for r in rows], [r["deliveries_per_s"] for r in rows], marker="o")
    ax.set_xlabel("worker processes")
    ax.set_ylabel("deliveries / s")
    ax.set_xticks([r["workers"] for r in rows])
    ax.set_ylim(bottom=0)
    ax.set_title("5. throughput by worker processes")


def _scale_latency(ax: Any, payload: dict[str, Any]) -> None:
    rows = payload["scale"]["steady"]
    for key in ("p50", "p95", "p99"):
        ax.plot(
            [r["workers"] for r in rows],
            [r["latency_ms"].get(key, 0) for r in rows],
            marker="o",
            label=key,
        )
    ax.set_xlabel("worker processes")
    ax.set_ylabel("ms")
    ax.set_xticks([r["workers"] for r in rows])
    ax.set_title("5. steady-load latency by worker processes")
    ax.legend(fontsize=7)


def _claims(ax: Any, payload: dict[str, Any]) -> None:
    rows = payload["scale"]["claims"]
    if not rows:
        ax.set_title("5. claim time (PostgreSQL only)")
        return
    ax.plot([r["rows"] for r in rows], [r["median_ms"] for r in rows], marker="o", label="median")
    ax.plot([r["rows"] for r in rows], [r["p95_ms"] for r in rows], marker="o", label="p95")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("rows in deliveries")
    ax.set_ylabel("ms per claim of 200")
    ax.set_title("5. claim time by table size")
    ax.legend(fontsize=7)
