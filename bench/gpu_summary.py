"""bench/gpu.sh's decisions and its closing table, from the JSON its steps wrote into OUT.

    python bench/gpu_summary.py OUT                     # the table; also OUT/summary.json
    python bench/gpu_summary.py OUT --combination       # flags of the combined run, or nothing
    python bench/gpu_summary.py OUT --winner bench|settings   # the fastest variant's flags, or nothing
    python bench/gpu_summary.py OUT --winner bench --force liger   # that variant's flags (a smoke test)

The variants are throughput_plain.json (genpt compiled, and nanoGPT's model compiled beside it),
throughput_liger.json, throughput_float8.json and throughput_best.json (the backends that each beat
the plain path, together). A backend counts only where its worker says it ran: one that stepped
aside (library or hardware missing) measured the plain path under another name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = ("plain", "liger", "float8", "best")
GAIN = 1.01  # a backend joins the combination when it beats the plain path by more than this


def load(out: Path) -> dict[str, dict]:
    found = {}
    for name in VARIANTS:
        path = out / f"throughput_{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def genpt_tps(report: dict) -> float:
    return report["results"]["genpt"]["tokens_per_s"]


def ran(report: dict) -> bool:
    """Whether every backend the variant asked for ran (the plain path asks for none)."""
    s = report["settings"]
    asked = (s.get("kernels", "torch") != "torch") + bool(s.get("float8"))
    return len(report["results"]["genpt"].get("backends", [])) == asked


def flags(report: dict, form: str) -> list[str]:
    s = report["settings"]
    kernels, float8 = s.get("kernels", "torch"), bool(s.get("float8"))
    if form == "bench":
        return (["--kernels", kernels] if kernels != "torch" else []) + (["--float8"] if float8 else [])
    return ((["--set", f"train.kernels={kernels}"] if kernels != "torch" else [])
            + (["--set", "train.float8=true"] if float8 else []))


def combination(found: dict[str, dict]) -> list[str]:
    if "plain" not in found:
        return []
    base = genpt_tps(found["plain"])
    winners = [n for n in ("liger", "float8") if n in found and ran(found[n]) and genpt_tps(found[n]) > GAIN * base]
    if len(winners) < 2:
        return []  # one backend alone is already measured
    return [f for n in winners for f in flags(found[n], "bench")]


def winner(found: dict[str, dict]) -> str | None:
    """The fastest variant whose backends ran, or None when the plain path is (or nothing was measured)."""
    valid = {n: genpt_tps(r) for n, r in found.items() if ran(r)}
    if not valid:
        return None
    best = max(valid, key=valid.get)
    return None if best == "plain" else best


def quality(out: Path) -> dict | None:
    """Held-out loss of the plain path and the winner after the same steps (time_to_quality's summaries)."""
    runs = {}
    for name in ("plain", "winner"):
        path = out / f"quality_{name}.json"
        if path.is_file():
            runs[name] = json.loads(path.read_text())
    if len(runs) < 2:
        return None
    plain, win = (runs[n]["points"] for n in ("plain", "winner"))
    return {"steps": runs["plain"]["steps"], "plain_final_val_loss": plain[-1][1], "winner_final_val_loss": win[-1][1],
            "difference": win[-1][1] - plain[-1][1], "plain_seconds": plain[-1][0], "winner_seconds": win[-1][0],
            "winner_settings": runs["winner"]["settings"]["set"]}


def table(out: Path, found: dict[str, dict]) -> dict:
    plain = found.get("plain")
    nano = plain["results"].get("nanogpt", {}).get("tokens_per_s") if plain else None
    rows = []
    print(f"{'variant':<10}{'tokens/s':>12}{'MFU':>7}{'vs plain':>10}{'vs nanoGPT':>12}  backends that ran")
    if nano:
        mfu = plain["results"]["nanogpt"]["mfu"]
        print(f"{'nanoGPT':<10}{nano:>12,.0f}{mfu:>7.2f}{'':>10}{1.0:>11.2f}x")
    for name, report in found.items():
        r = report["results"]["genpt"]
        vs_plain = r["tokens_per_s"] / genpt_tps(plain) if plain else None
        vs_nano = r["tokens_per_s"] / nano if nano else None
        rows.append({"variant": name, "tokens_per_s": r["tokens_per_s"], "mfu": r["mfu"], "vs_plain": vs_plain,
                     "vs_nanogpt": vs_nano, "backends": r.get("backends", []), "all_ran": ran(report)})
        print(f"{name:<10}{r['tokens_per_s']:>12,.0f}{r['mfu']:>7.2f}"
              + (f"{vs_plain:>9.2f}x" if vs_plain else f"{'':>10}") + (f"{vs_nano:>11.2f}x" if vs_nano else f"{'':>12}")
              + f"  {'; '.join(r.get('backends', [])) or '-'}"
              + ("" if ran(report) else "  (an asked-for backend was missing)"))
    best = winner(found)
    q = quality(out)
    print(f"\nwinner: {best or 'plain'}; issue 18's target: >= 1.25x nanoGPT, MFU >= 0.60")
    if q:
        settings = " ".join(kv for kv in q["winner_settings"] if kv.startswith(("train.kernels", "train.float8")))
        print(f"held-out loss after {q['steps']} steps: plain {q['plain_final_val_loss']:.4f}, "
              f"with {settings} {q['winner_final_val_loss']:.4f} ({q['difference']:+.4f})")
    summary = {"nanogpt_tokens_per_s": nano, "variants": rows, "winner": best or "plain", "quality": q}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--combination", action="store_true")
    p.add_argument("--winner", choices=("bench", "settings"))
    p.add_argument("--force", choices=VARIANTS[1:], help="take this variant as the winner, measured or not")
    args = p.parse_args(argv)
    found = load(args.out)
    if args.combination:
        print(" ".join(combination(found)))
    elif args.winner:
        best = args.force if args.force in found else winner(found)
        print(" ".join(flags(found[best], args.winner)) if best else "")
    else:
        table(args.out, found)


if __name__ == "__main__":
    main()
