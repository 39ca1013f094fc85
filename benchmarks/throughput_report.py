"""`benchmarks.throughput`'s output: the rows' ratios, the markdown tables with the targets, and
the files (throughput.csv, throughput.md, throughput.json with the run's provenance)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.baselines import PPO_BASELINE, REFERENCE
from benchmarks.instruments import RAW_SIMULATOR, TASKS
from benchmarks.provenance import write_provenance

FISHER_VARIANT, FIRST_ORDER = "HATRPO-fisher0.1", "HAPPO"
"""The other algorithm rows the issue sets a whole-loop target for."""

DEFAULT_TASK = next(iter(TASKS))
"""The task of the algorithm rows (the experiment files' HalfCheetah 2x3)."""

CSV_FIELDS = [
    "section",
    "name",
    "task",
    "num_env_runners",
    "num_envs_per_env_runner",
    "env_steps",
    "seconds",
    "env_steps_per_s",
    "iteration_s",
    "sample_env_steps_per_s",
    "raw_sim_env_steps_per_s",
    "learn_s_per_iteration",
    "whole_vs_ppo",
    "sample_vs_raw_per_runner",
    "peak_rss_algorithm_mb",
    "peak_rss_all_mb",
    "peak_rss_driver_mb",
    "peak_rss_env_runners_mb",
    "memory_vs_ppo",
    "build_s",
    "timing",
]
"""Columns of throughput.csv; a row leaves empty what its section does not measure."""


# --- report ----------------------------------------------------------------------------------


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Whole-loop throughput and memory relative to PPO; sampling relative to the raw
    simulator rate times the number of EnvRunners (sampling in the driver counts as one). The
    raw rate is the row's own, measured on its EnvRunners next to its sampling, where it has
    one, else the simulator section's."""
    ceilings = {r.get("task"): r["env_steps_per_s"] for r in rows if r.get("name") == RAW_SIMULATOR}
    ppo = next((r for r in rows if r["section"] == "algorithm" and r["name"] == PPO_BASELINE), None)
    for row in rows:
        runners = max(int(row.get("num_env_runners") or 0), 1)
        rate = row.get("sample_env_steps_per_s") or (
            row["env_steps_per_s"] if row["section"] in ("scaling", "simulator") else None
        )
        raw = row.get("raw_sim_env_steps_per_s") or ceilings.get(row.get("task") or DEFAULT_TASK)
        if raw and rate:
            row["sample_vs_raw_per_runner"] = round(rate / (raw * runners), 3)
        if row["section"] == "algorithm" and ppo:
            row["whole_vs_ppo"] = round(row["env_steps_per_s"] / ppo["env_steps_per_s"], 2)
            row["memory_vs_ppo"] = round(
                row["peak_rss_algorithm_mb"] / ppo["peak_rss_algorithm_mb"], 2
            )


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "–" if value in ("", None) else format(value, spec)


def markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The tables, the targets and the measuring conditions as markdown."""
    out = [
        f"Measured {meta['date']} on {meta['machine']}; commit {meta['commit']}; "
        f"{meta['versions']}.",
        f"Load average (1 min) before / after: {meta['load_before']} / {meta['load_after']} "
        f"({meta['note']}).",
        "",
        "| task | simulator layer, random actions, one core | env steps/s | / bare physics |",
        "|---|---|---:|---:|",
    ]
    out += [
        f"| {r.get('task', '')} | {r['name']} | {_fmt(r['env_steps_per_s'])} "
        f"| {_fmt(r.get('sample_vs_raw_per_runner'), '.2f')} |"
        for r in rows
        if r["section"] == "simulator"
    ]
    out += [
        "",
        "| algorithm | runners × envs | whole loop env steps/s | × PPO | sampling env steps/s "
        "| raw sim on the runners' cores | sampling / raw sim per runner | learning s/iter "
        "| iteration s | peak RSS algorithm MB | peak RSS all MB | memory × PPO |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["section"] != "algorithm":
            continue
        out.append(
            f"| {r['name']} | {r['num_env_runners']} × {r['num_envs_per_env_runner']} "
            f"| {_fmt(r['env_steps_per_s'])} | {_fmt(r.get('whole_vs_ppo'), '.2f')} "
            f"| {_fmt(r.get('sample_env_steps_per_s'))} "
            f"| {_fmt(r.get('raw_sim_env_steps_per_s'))} "
            f"| {_fmt(r.get('sample_vs_raw_per_runner'), '.0%')} "
            f"| {_fmt(r['learn_s_per_iteration'], '.2f')} | {_fmt(r['iteration_s'], '.2f')} "
            f"| {_fmt(r['peak_rss_algorithm_mb'])} | {_fmt(r['peak_rss_all_mb'])} "
            f"| {_fmt(r.get('memory_vs_ppo'), '.2f')} |"
        )
    scaling = [r for r in rows if r["section"] == "scaling"]
    if scaling:
        out += [
            "",
            "| HATRPO sampling | EnvRunners × envs each | env steps/s | per EnvRunner "
            "| bare physics per EnvRunner core | / bare physics per EnvRunner |",
            "|---|---|---:|---:|---:|---:|",
        ]
    for r in scaling:
        runners = max(int(r["num_env_runners"]), 1)
        out.append(
            f"| {r.get('task', DEFAULT_TASK)} | {r['num_env_runners']} × "
            f"{r['num_envs_per_env_runner']} "
            f"| {_fmt(r['env_steps_per_s'])} | {_fmt(r['env_steps_per_s'] / runners)} "
            f"| {_fmt(r.get('raw_sim_env_steps_per_s'))} "
            f"| {_fmt(r.get('sample_vs_raw_per_runner'), '.0%')} |"
        )
    out += ["", *targets(rows)]
    return "\n".join(out)


def targets(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The issue's speed targets, each with its measured value and met / not met."""
    algos = {r["name"]: r for r in rows if r["section"] == "algorithm"}
    ppo = algos.get(PPO_BASELINE)
    if not ppo:
        return ["Targets: need a PPO row."]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = ["Targets (issue 15; reported, not asserted):", ""]
    for name, bound in ((REFERENCE, 3.0), (FISHER_VARIANT, 5.0), (FIRST_ORDER, 3.0)):
        if name in algos:
            whole = algos[name].get("whole_vs_ppo") or 0.0
            lines.append(
                f"* whole loop {name} ≥ {bound:g}× PPO: {whole:.2f}× — {verdict(whole >= bound)}"
            )
    sampling = [r for r in rows if r["section"] == "scaling" and r.get("sample_vs_raw_per_runner")]
    for r in sampling:
        if int(r["num_env_runners"]) <= 1 and int(r["num_envs_per_env_runner"]) == 20:
            ratio = r["sample_vs_raw_per_runner"]
            lines.append(
                f"* sampling ({r.get('task', DEFAULT_TASK)}, 1 × 20, policy and buffers included) "
                f"≥ 0.7× bare physics per EnvRunner core: {ratio:.2f}× — {verdict(ratio >= 0.7)}"
            )
    for name, row in algos.items():
        if name != PPO_BASELINE and row.get("memory_vs_ppo"):
            memory = row["memory_vs_ppo"]
            lines.append(
                f"* {name} peak memory (algorithm processes) ≤ PPO's: {memory:.2f}× — "
                f"{verdict(0 < memory <= 1)}"
            )
    return lines


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path) -> str:
    """Writes throughput.csv, throughput.md and throughput.json (`meta`: the provenance) into
    `out_dir`; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows, meta)
    (out_dir / "throughput.md").write_text(text + "\n")
    write_provenance(out_dir / "throughput.csv", meta)
    return text
