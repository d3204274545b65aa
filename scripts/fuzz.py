#!/usr/bin/env python3
"""Mutates the fixtures and the rule packs and runs graphrw on them, looking
for panics, crashes and hangs (any exit but 0 and 1 is one; so is a run over
20 s). Every graphrw command that reads a model or a rules file is tried.

    python3 scripts/fuzz.py [--runs N] [--seed S] [--bin PATH]

Seven kinds of input, in turn: binary models with bytes changed, inserted,
removed or copied; text-format models mutated the same way; text-format
models with their numbers, dtypes and strings swapped for others (which
keeps them parsable, so the evaluator and the rules see odd shapes and
attributes); rule files with tokens inserted, removed or copied; `.npy`
feeds with their header's dtype, shape or order swapped, or bytes changed
or cut; command-line options (`--outputs` naming nodes with odd ports or
not at all, `--set` with odd names and values) on the models as they are;
text-format models of several MB (a fixture's nodes copied under new names),
which graphrw reads in pieces, mutated or cut short. A failing input is
kept under the work directory (printed), and the exit code is the number of
failures (capped at 100).

Build first: `cargo build --release`.
"""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKS = ["inference", "cond", "bn", "fold", "dropout", "merge", "switch", "lock-training"]
RULE_TOKENS = ["(", ")", "{", "}", "[", "]", ",", ":", "=>", "where", "and", "or", "not", "==",
               "!=", "~", '"*"', "_", "...", "|", "const(", "rsqrt(", "dead", "Const", "Switch",
               "1e400", "-1", '"', "\\", "\n", "rule r:", 'import "fold"', 'import "x"',
               "param p = [1]", "reshape(", "[-1, 1, 1]", "consumers(", "rank(", "dtype(", ".T"]
TOKEN = re.compile(r'\bDT_[A-Z0-9_]+\b|(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?\b|"[^"\n]{0,40}"')


def mutate_bytes(rng, data, text):
    data = bytearray(data)
    kind = rng.randrange(5)
    at = rng.randrange(len(data))
    if kind == 0:
        for _ in range(rng.randrange(1, 8)):
            j = rng.randrange(len(data))
            data[j] = rng.choice(b'{}:"\\ \n0123456789abcxyz_-.') if text else rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(len(data)):]
    elif kind == 2:
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    elif kind == 3:
        del data[at:at + rng.randrange(1, 64)]
    else:
        src = rng.randrange(len(data))
        data[at:at] = data[src:src + rng.randrange(1, 200)]
    return bytes(data)


def mutate_tokens(rng, text):
    for _ in range(rng.randrange(1, 4)):
        tokens = list(TOKEN.finditer(text))
        t = rng.choice(tokens)
        s = t.group(0)
        if s.startswith("DT_"):
            r = rng.choice(["DT_FLOAT", "DT_INT32", "DT_BOOL", "DT_HALF", "DT_DOUBLE", "DT_INT64",
                            "DT_STRING", "DT_UINT8", "DT_COMPLEX64", "DT_RESOURCE"])
        elif s.startswith('"'):
            r = rng.choice(['"NCHW"', '"NHWC"', '"VALID"', '"SAME"', '""', '"x"', '"training"',
                            '"^x"', '"a:9"'])
        else:
            r = rng.choice(["0", "1", "-1", "2", "3", "7", "64", "-2", "2147483647",
                            "-9223372036854775808", "100000", "4294967296", "1e38", "nan", "-inf"])
        text = text[:t.start()] + r + text[t.end():]
    return text


def mutate_rules(rng, text):
    for _ in range(rng.randrange(1, 5)):
        j = rng.randrange(len(text) + 1)
        kind = rng.randrange(3)
        if kind == 0:
            text = text[:j] + rng.choice(RULE_TOKENS) + text[j:]
        elif kind == 1:
            text = text[:j] + text[j + rng.randrange(1, 20):]
        else:
            s = rng.randrange(len(text))
            text = text[:j] + text[s:s + rng.randrange(1, 40)] + text[j:]
    return text


NPY_SWAPS = ["'<f8'", "'>f4'", "'|b1'", "'<i8'", "'<U4'", "'O'", "True", "(0,)", "(-1, 3)",
             "(99999999999, 99999999999)", "()", "'x'"]


def mutate_options(rng, names):
    """An `--outputs` list and `--set` options, each odd in its own way."""
    def tensor():
        n = rng.choice(names)
        return rng.choice([n, f"{n}:{rng.randrange(6)}", f"{n}:", f"{n}:-1",
                           f"{n}:99999999999", f"{n}:x", f"^{n}", n[:-1], ":1", " " + n])
    outputs = ",".join(tensor() for _ in range(rng.randrange(1, 4)))
    sets = []
    for _ in range(rng.randrange(3)):
        name = rng.choice(["flag", "float_types", "nope", "", " flag"])
        value = rng.choice(["", ",", "a,,b", "training", "1.5", "true", "DT_HALF", "DT_X",
                            "x" * 1000, "\u00e9", "=", "flag=x", "1e400", "-0"])
        sets += ["--set", f"{name}={value}"]
    return outputs, sets


def mutate_npy(rng, data):
    header_end = 10 + int.from_bytes(data[8:10], "little")
    kind = rng.randrange(3)
    if kind == 0:
        header = data[10:header_end].decode("latin1")
        key = rng.choice(re.findall(r"'<f4'|False|\([0-9, ]*\)|'descr'|'shape'", header))
        header = header.replace(key, rng.choice(NPY_SWAPS), 1).encode("latin1")
        return data[:8] + len(header).to_bytes(2, "little") + header + data[header_end:]
    if kind == 1:
        data = bytearray(data)
        for _ in range(rng.randrange(1, 5)):
            data[rng.randrange(min(len(data), header_end + 8))] = rng.randrange(256)
        return bytes(data)
    return data[:rng.randrange(len(data))]


def large_text(text, size=5 << 19):
    """The text-format model `text` with its nodes copied (renamed `cK/...`,
    inputs with them) until it is `size` bytes or more: a file graphrw reads
    in pieces."""
    nodes = re.findall(r"^node \{\n.*?^\}\n", text, re.M | re.S)
    rest = re.sub(r"^node \{\n.*?^\}\n", "", text, flags=re.M | re.S)
    copies, k = [], 0
    while sum(map(len, copies)) < size and nodes:
        for node in nodes:
            node = re.sub(r'^  name: "', f'  name: "c{k}/', node, flags=re.M)
            node = node.replace('"loc:@', f'"loc:@c{k}/')
            copies.append(re.sub(r'^  input: "(\^?)', rf'  input: "\1c{k}/', node, flags=re.M))
        k += 1
    return "".join(copies) + rest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/graphrw"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="graphrw-fuzz-")
    fixtures = []
    for meta in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/*/meta.json"))):
        d = os.path.dirname(meta)
        text = os.path.join(work, os.path.basename(d) + ".pbtxt")
        subprocess.run([args.bin, "convert", os.path.join(d, "model.pb"), text], check=True,
                       capture_output=True)
        case = json.load(open(meta))["cases"][0]
        feeds = []
        for name, f in case["inputs"].items():
            feeds += ["--feed", f"{name.split(':')[0]}={os.path.join(d, f)}"]
        for name, v in case.get("mode", {}).items():
            feeds += ["--feed", f"{name.split(':')[0]}={str(v).lower()}"]
        fixtures.append((d, open(os.path.join(d, "model.pb"), "rb").read(),
                         open(text).read(), feeds))
    names = {f[0]: re.findall(r'^  name: "(.*)"$', f[2], re.M) for f in fixtures}
    npys = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/*/case0/in_*.npy")))
    rules = sorted(glob.glob(os.path.join(ROOT, "rules/*.rules")))
    out = os.path.join(work, "out")
    failures = 0
    large = {}
    for i in range(args.runs):
        d, binary, text, feeds = rng.choice(fixtures)
        kind = i % 7
        if kind == 6:
            path = os.path.join(work, f"in{i}.pbtxt")
            if d not in large:
                large[d] = large_text(text)
            big = large[d]
            if rng.random() < 0.2:
                big = big[:rng.randrange(len(big))] + rng.choice(["", "\\", '"x\\', "{", "#"])
            elif rng.random() < 0.5:
                big = mutate_bytes(rng, big.encode(), True).decode("utf-8", "replace")
            else:
                big = mutate_tokens(rng, big)
            open(path, "w").write(big)
            command = rng.choice([["inspect", path], ["convert", path, out + ".pb"]])
        elif kind == 5:
            model = os.path.join(d, "model.pb")
            path = os.path.join(work, f"in{i}.txt")
            outputs, sets = mutate_options(rng, names[d])
            open(path, "w").write(" ".join([outputs, *sets]))
            command = rng.choice([
                ["apply", rng.choice(PACKS), model, "--dry-run", "--outputs", outputs, *sets],
                ["apply", "inference", model, "-o", out + ".pb", *sets],
                ["run", model, *feeds, "--outputs", outputs, "-o", work],
                ["verify", model, model, *feeds, "--outputs", outputs],
                ["prune", model, "--outputs", outputs, "-o", out + ".pb"],
            ])
        elif kind == 4:
            d, feed = rng.choice([(os.path.dirname(os.path.dirname(f)), f) for f in npys])
            path = os.path.join(work, f"in{i}.npy")
            open(path, "wb").write(mutate_npy(rng, open(feed, "rb").read()))
            _, _, _, feeds = next(f for f in fixtures if f[0] == d)
            feeds = [f.split("=")[0] + "=" + path if f.endswith("=" + feed) else f for f in feeds]
            command = ["run", os.path.join(d, "model.pb"), *feeds, "-o", work]
        elif kind == 3:
            path = os.path.join(work, f"in{i}.rules")
            open(path, "w").write(mutate_rules(rng, open(rng.choice(rules)).read()))
            command = rng.choice([["check", path],
                                  ["apply", path, os.path.join(d, "model.pb"), "--dry-run"]])
        else:
            ext = "pb" if kind == 0 else "pbtxt"
            path = os.path.join(work, f"in{i}.{ext}")
            if kind == 0:
                data = mutate_bytes(rng, binary, False)
            elif kind == 1:
                data = mutate_bytes(rng, text.encode(), True)
            else:
                data = mutate_tokens(rng, text).encode()
            open(path, "wb").write(data)
            pack = rng.choice(PACKS)
            command = rng.choice([
                ["inspect", path], ["validate", path], ["convert", path, out + ".pbtxt"],
                ["prune", path, "-o", out + ".pb"],
                ["apply", pack, path, "--dry-run", "--outputs", rng.choice(["x", "a,b"])],
                ["apply", pack, path, "-o", out + ".pb", "--report", "json"],
                ["apply", pack, path, "-o", out + ".pb", "--verify"],
                ["apply", "inference", path, "-o", out + ".pbtxt", "--max-rewrites",
                 str(rng.randrange(30))],
                ["run", path, *feeds, "-o", work],
                ["verify", os.path.join(d, "model.pb"), path, *feeds],
            ])
        try:
            r = subprocess.run([args.bin, *command], capture_output=True, text=True, timeout=20)
            failed = r.returncode not in (0, 1) or "panicked" in r.stderr
            why = f"exit {r.returncode}: {r.stderr[-400:]}"
        except subprocess.TimeoutExpired:
            failed, why = True, "over 20 s"
        if failed:
            failures += 1
            print(f"run {i}: graphrw {' '.join(command)}\n  {why}", flush=True)
        else:
            os.remove(path)
    print(f"{args.runs} runs, {failures} failed; inputs that failed are in {work}")
    sys.exit(min(failures, 100))


if __name__ == "__main__":
    main()
