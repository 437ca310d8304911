#!/usr/bin/env python3
"""The recommender against numpy's floor, in one run (driven by bench/recommender.sh).

For each catalogue size it writes a sample model with the real `recommender sample-model`, starts
the real `recommender serve` on loopback (pinned to one core), sends each policy's requests over
HTTP keep-alive, and reads the server's CPU time per request from /proc (schedstat: nanoseconds on
CPU, summed over the server's threads). In the same run it times numpy's exhaustive f32 scoring on
the same embeddings (OpenBLAS sgemv + argpartition top-k, one thread, pinned to the same core):
the memory-bound floor. It prints the ratio. Optional reduced-precision models (f16, int8) of the
same embeddings report recall@10 of the served deterministic lists against exact f32 top-10.

Exit status: non-zero only when something is broken (a server that does not start, a non-200
answer, a malformed body), never because a number is slow.
"""

import argparse
import http.client
import json
import os
import select
import struct
import subprocess
import sys
import time

import numpy as np

POLICIES = [
    "deterministic",
    "stochastic_plackett_luce",
    "stochastic_plackett_luce_cached",
    "stochastic_gumbel_softmax_trick",
    "stochastic_epsilon_greedy",
]
DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8}


def log(msg):
    print(f"[recommender-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Broken(Exception):
    """Something that makes the measurement meaningless (exit 1)."""


def read_safetensors(path):
    """The tensors of a safetensors file as numpy arrays (8-byte length, JSON header, raw data)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(DTYPES[meta["dtype"]])
        start, end = meta["data_offsets"]
        count = (end - start) // dtype.itemsize
        out[name] = np.frombuffer(data, dtype=dtype, count=count, offset=8 + n + start).reshape(
            meta["shape"]
        )
    return out


def load_model(model_dir):
    manifest = json.load(open(os.path.join(model_dir, "model.json")))
    tensors = read_safetensors(os.path.join(model_dir, manifest["embeddings"]))
    user_ids = json.load(open(os.path.join(model_dir, manifest["user_ids"])))
    return tensors, user_ids


def cpu_ns(pid):
    """Nanoseconds the process has spent on a CPU, all threads (first field of schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended between listdir and open
    return total


class Server:
    def __init__(self, binary, model_dir, cpu, log_path):
        env = dict(os.environ, SM_MODEL_DIR=model_dir, RUST_LOG="info")
        self.log = open(log_path, "w")
        cmd = [binary, "serve", "--listen", "127.0.0.1:0"]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        # taskset execs the server, so the pid is the server's.
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self.log)
        deadline = time.monotonic() + 120
        line = b""
        while time.monotonic() < deadline and b"\n" not in line:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    break
                line += chunk
        text = line.decode(errors="replace").strip()
        if not text.startswith("recommender listening on "):
            self.stop()
            raise Broken(f"server did not start (stdout {text!r}; see {log_path})")
        host, port = text.rsplit(" ", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def invoke(self, body):
        self.conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise Broken(f"HTTP {reply.status}: {data[:300]!r}")
        return data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def body(user, policy, k):
    return json.dumps({"user_id": user, "k": k, "inference_type": policy}).encode()


def measure(server, bodies, min_seconds, max_requests, warmup):
    """Server CPU µs per request over at least `min_seconds` of wall time (or `max_requests`)."""
    for b in bodies[:warmup]:
        server.invoke(b)
    start_cpu = cpu_ns(server.proc.pid)
    start = time.monotonic()
    n = 0
    while n < max_requests and (n < 200 or time.monotonic() - start < min_seconds):
        server.invoke(bodies[n % len(bodies)])
        n += 1
    return (cpu_ns(server.proc.pid) - start_cpu) / 1000 / n, n


def numpy_floor(items, users, k, min_seconds):
    """numpy's exhaustive f32 scoring + top-k, µs of this thread's CPU per request (one core)."""

    def once(u):
        s = items @ u  # OpenBLAS sgemv
        top = np.argpartition(s, -k)[-k:]
        return top[np.argsort(-s[top], kind="stable")]

    def timed(fn):
        for i in range(50):
            fn(users[i % len(users)])
        t0, w0, n = time.thread_time_ns(), time.monotonic(), 0
        while n < 200 or time.monotonic() - w0 < min_seconds:
            fn(users[n % len(users)])
            n += 1
        return (time.thread_time_ns() - t0) / 1000 / n

    full = timed(once)
    sgemv = timed(lambda u: items @ u)
    return full, sgemv


def exact_top(items, user, k):
    s = items.astype(np.float64) @ user.astype(np.float64)
    return set(np.argsort(-s, kind="stable")[:k].tolist())


def run_size(args, n_items, out_dir, rows, recalls):
    base = os.path.join(out_dir, f"model-{n_items}")
    users = max(args.users, args.requests_cap_miss + 10)
    spec = ["--users", str(users), "--items", str(n_items), "--dim", str(args.dim), "--seed", "7"]
    subprocess.run([args.binary, "sample-model", "--out", base] + spec, check=True, stdout=subprocess.DEVNULL)
    tensors, user_ids = load_model(base)
    items = np.ascontiguousarray(tensors["item_embeddings"], dtype=np.float32)
    user_rows = np.ascontiguousarray(tensors["user_embeddings"], dtype=np.float32)
    k = args.k

    # The floor first, on the server's core while no server runs there.
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    floor, sgemv = numpy_floor(items, user_rows[: args.users], k, args.seconds)
    if args.driver_cpu is not None:
        os.sched_setaffinity(0, {args.driver_cpu})
    log(f"{n_items} items: numpy floor {floor:.1f} µs (sgemv alone {sgemv:.1f} µs)")

    server = Server(args.binary, base, args.cpu, os.path.join(out_dir, f"server-{n_items}.log"))
    try:
        warm_users = user_ids[: args.users]
        for policy in POLICIES:
            if policy == "stochastic_plackett_luce_cached":
                # Miss: every request a user not seen before. Hit: one user, again and again.
                miss_users = user_ids[args.users : args.users + args.requests_cap_miss]
                miss = [body(u, policy, k) for u in miss_users]
                us, n = measure(server, miss, args.seconds, len(miss), 0)
                rows.append((n_items, policy + " (miss)", us, floor, n))
                hit = [body(user_ids[0], policy, k)]
                us, n = measure(server, hit, args.seconds, args.max_requests, 20)
                rows.append((n_items, policy + " (hit)", us, floor, n))
            else:
                bodies = [body(u, policy, k) for u in warm_users]
                us, n = measure(server, bodies, args.seconds, args.max_requests, 100)
                rows.append((n_items, policy, us, floor, n))
            log(f"{n_items} items: {rows[-1][1]}: {rows[-1][2]:.1f} µs/request over {rows[-1][4]}")
    finally:
        server.stop()

    for dtype in args.dtypes:
        qdir = f"{base}-{dtype}"
        subprocess.run(
            [args.binary, "sample-model", "--out", qdir, "--dtype", dtype] + spec,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        server = Server(args.binary, qdir, args.cpu, os.path.join(out_dir, f"server-{n_items}-{dtype}.log"))
        try:
            hits = 0
            sample = user_ids[: args.recall_users]
            for row, user in enumerate(sample):
                reply = json.loads(server.invoke(body(user, "deterministic", 10)))
                served = {int(r["item_id"][2:]) - 1 for r in reply["recommendations"]}
                hits += len(served & exact_top(items, user_rows[row], 10))
            recall = hits / (10 * len(sample))
            bodies = [body(u, p, k) for u in warm_users for p in ("deterministic",)]
            det, n = measure(server, bodies, args.seconds, args.max_requests, 100)
            rows.append((n_items, f"deterministic, {dtype} embeddings", det, floor, n))
            bodies = [body(u, "stochastic_plackett_luce", k) for u in warm_users]
            pl, n = measure(server, bodies, args.seconds, args.max_requests, 100)
            rows.append((n_items, f"stochastic_plackett_luce, {dtype} embeddings", pl, floor, n))
            recalls.append((n_items, dtype, recall, len(sample)))
            log(f"{n_items} items, {dtype}: recall@10 {recall:.4f}, deterministic {det:.1f} µs")
        finally:
            server.stop()
    return floor, sgemv


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--items", default="10000,60000")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--users", type=int, default=500, help="users cycled through per policy")
    p.add_argument("--seconds", type=float, default=1.5, help="wall time per measured row")
    p.add_argument("--max-requests", type=int, default=20000)
    p.add_argument("--requests-cap-miss", type=int, default=1500, help="distinct users for the cache-miss row")
    p.add_argument("--dtypes", default="f16,int8", help="reduced-precision formats to add ('' for none)")
    p.add_argument("--recall-users", type=int, default=200)
    p.add_argument("--cpu", type=int, default=None, help="core for the server and the numpy floor")
    p.add_argument("--driver-cpu", type=int, default=None, help="core for this HTTP driver")
    args = p.parse_args()
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    os.makedirs(args.out, exist_ok=True)

    rows, recalls, floors = [], [], {}
    try:
        for n in [int(x) for x in args.items.split(",")]:
            floors[n] = run_size(args, n, args.out, rows, recalls)
    except (Broken, subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
        log(f"FAILED: {e}")
        return 1

    lines = [
        f"Server CPU per `/invocations` request (all server threads, schedstat) vs numpy's exhaustive",
        f"f32 scoring on the same embeddings (numpy {np.__version__}, OpenBLAS sgemv + argpartition",
        f"top-{args.k}, one thread), same core, same run. dim {args.dim}, k {args.k}.",
        "",
        "| items | policy | server CPU µs/request | numpy floor µs | ratio | requests |",
        "|---|---|---|---|---|---|",
    ]
    for n, policy, us, floor, count in rows:
        lines.append(f"| {n} | {policy} | {us:.1f} | {floor:.1f} | {us / floor:.2f}× | {count} |")
    lines.append("")
    for n, (floor, sgemv) in floors.items():
        lines.append(f"- numpy at {n} items: {floor:.1f} µs per request, of which sgemv alone {sgemv:.1f} µs")
    for n, dtype, recall, count in recalls:
        lines.append(
            f"- {dtype} embeddings at {n} items: recall@10 of served deterministic lists vs exact f32 top-10 = "
            f"{recall:.4f} ({count} users)"
        )
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
