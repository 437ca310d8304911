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


class Row:
    """One measured row: a name, a way to run one batch, and the CPU it has used so far."""

    def __init__(self, name, batch):
        self.name, self.batch, self.cpu_ns, self.count = name, batch, 0, 0

    def per_request_us(self):
        return self.cpu_ns / 1000 / max(self.count, 1)


def server_batch(server, bodies, size):
    """A batch of `size` requests cycling through `bodies`; returns (server CPU ns, count)."""
    state = {"next": 0}

    def run():
        start = cpu_ns(server.proc.pid)
        for _ in range(size):
            server.invoke(bodies[state["next"] % len(bodies)])
            state["next"] += 1
        return cpu_ns(server.proc.pid) - start, size

    return run


def floor_batch(items, users, k, size, cpu, driver_cpu):
    """numpy's exhaustive f32 scoring + top-k on the server's core: (this thread's CPU ns, count)."""
    state = {"next": 0}

    def run():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        t0 = time.thread_time_ns()
        for _ in range(size):
            u = users[state["next"] % len(users)]
            state["next"] += 1
            s = items @ u  # OpenBLAS sgemv
            top = np.argpartition(s, -k)[-k:]
            top[np.argsort(-s[top], kind="stable")]
        used = time.thread_time_ns() - t0
        if driver_cpu is not None:
            os.sched_setaffinity(0, {driver_cpu})
        return used, size

    return run


def interleave(rows, seconds, max_rounds):
    """After a warm-up round, one batch of every row per round until `seconds` of wall time (at
    least 2 rounds, at most `max_rounds`): every row sees the same mix of whatever else the machine is doing, so their
    ratios hold on a shared machine."""
    for row in rows:
        row.batch()  # warm-up round, not counted
    start, rounds = time.monotonic(), 0
    while rounds < 2 or (time.monotonic() - start < seconds and rounds < max_rounds):
        for row in rows:
            used, n = row.batch()
            row.cpu_ns += used
            row.count += n
        rounds += 1
    return rounds


def exact_top(items, user, k):
    s = items.astype(np.float64) @ user.astype(np.float64)
    return set(np.argsort(-s, kind="stable")[:k].tolist())




def run_size(args, n_items, out_dir, rows, recalls, floors):
    base = os.path.join(out_dir, f"model-{n_items}")
    # Batches sized so that one round of every row takes about the same time at any catalogue size.
    batch = max(10, int(2_000_000 / n_items))
    miss_users = batch * (args.max_rounds + 2)
    spec = ["--items", str(n_items), "--dim", str(args.dim), "--seed", "7"]
    spec += ["--users", str(args.users + miss_users + 10)]
    subprocess.run([args.binary, "sample-model", "--out", base] + spec, check=True, stdout=subprocess.DEVNULL)
    tensors, user_ids = load_model(base)
    items = np.ascontiguousarray(tensors["item_embeddings"], dtype=np.float32)
    user_rows = np.ascontiguousarray(tensors["user_embeddings"], dtype=np.float32)
    k = args.k
    if args.driver_cpu is not None:
        os.sched_setaffinity(0, {args.driver_cpu})
    floor_run = floor_batch(items, user_rows[: args.users], k, batch, args.cpu, args.driver_cpu)
    floor_run()  # warm-up
    warm = user_ids[: args.users]

    server = Server(args.binary, base, args.cpu, os.path.join(out_dir, f"server-{n_items}.log"))
    servers = [(server, "")]
    try:
        if args.baseline:
            # Another build of the server (e.g. the main branch), measured in the same rounds.
            log_path = os.path.join(out_dir, f"server-{n_items}-baseline.log")
            servers.append((Server(args.baseline, base, args.cpu, log_path), " [baseline]"))
        measured = [Row("numpy floor", floor_run)]
        for (server, tag), policy in ((s, p) for s in servers for p in POLICIES):
            if policy == "stochastic_plackett_luce_cached":
                # Miss: every request a user not seen before. Hit: one user, again and again.
                fresh = [body(u, policy, k) for u in user_ids[args.users : args.users + miss_users]]
                measured.append(Row(policy + " (miss)" + tag, server_batch(server, fresh, batch)))
                hit = [body(user_ids[0], policy, k)]
                server.invoke(hit[0])
                measured.append(Row(policy + " (hit)" + tag, server_batch(server, hit, batch)))
            else:
                bodies = [body(u, policy, k) for u in warm]
                for b in bodies[:50]:
                    server.invoke(b)
                measured.append(Row(policy + tag, server_batch(server, bodies, batch)))
        rounds = interleave(measured, args.seconds, args.max_rounds)
    finally:
        for server, _ in servers:
            server.stop()
    floor = measured[0].per_request_us()
    floors[n_items] = floor
    log(f"{n_items} items: {rounds} rounds of {batch} requests per row; numpy floor {floor:.1f} µs")
    for row in measured[1:]:
        rows.append((n_items, row.name, row.per_request_us(), floor, row.count))
        log(f"{n_items} items: {row.name}: {row.per_request_us():.1f} µs/request over {row.count}")

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
            recalls.append((n_items, dtype, hits / (10 * len(sample)), len(sample)))
            measured = [Row("numpy floor", floor_run)] + [
                Row(f"{p}, {dtype} embeddings", server_batch(server, [body(u, p, k) for u in warm], batch))
                for p in ("deterministic", "stochastic_plackett_luce")
            ]
            interleave(measured, args.seconds / 2, args.max_rounds)
        finally:
            server.stop()
        for row in measured[1:]:
            rows.append((n_items, row.name, row.per_request_us(), measured[0].per_request_us(), row.count))
        log(f"{n_items} items, {dtype}: recall@10 {recalls[-1][2]:.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--items", default="10000,60000")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--users", type=int, default=500, help="users cycled through per policy")
    p.add_argument("--seconds", type=float, default=12, help="wall time of the interleaved rounds per size")
    p.add_argument("--max-rounds", type=int, default=60, help="rounds at most (bounds the users a cache-miss row needs)")
    p.add_argument("--dtypes", default="f16,int8", help="reduced-precision formats to add ('' for none)")
    p.add_argument("--recall-users", type=int, default=200)
    p.add_argument("--cpu", type=int, default=None, help="core for the server and the numpy floor")
    p.add_argument("--driver-cpu", type=int, default=None, help="core for this HTTP driver")
    p.add_argument("--baseline", default=None, help="another recommender binary to measure in the same rounds")
    args = p.parse_args()
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    os.makedirs(args.out, exist_ok=True)

    rows, recalls, floors = [], [], {}
    try:
        for n in [int(x) for x in args.items.split(",")]:
            run_size(args, n, args.out, rows, recalls, floors)
    except (Broken, subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
        log(f"FAILED: {e}")
        return 1

    lines = [
        "Server CPU per `/invocations` request (all server threads, schedstat) vs numpy's exhaustive",
        f"f32 scoring on the same embeddings (numpy {np.__version__}, OpenBLAS sgemv + argpartition",
        f"top-{args.k}, one thread), same core, same run, one batch of every row per round. dim {args.dim}, k {args.k}.",
        "",
        "| items | policy | server CPU µs/request | numpy floor µs | ratio | requests |",
        "|---|---|---|---|---|---|",
    ]
    for n, policy, us, floor, count in rows:
        lines.append(f"| {n} | {policy} | {us:.1f} | {floor:.1f} | {us / floor:.2f}× | {count} |")
    lines.append("")
    for n, dtype, recall, count in recalls:
        lines.append(
            f"- {dtype} embeddings at {n} items: recall@10 of the served deterministic lists against the "
            f"exact f32 top-10 = {recall:.4f} ({count} users)"
        )
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
