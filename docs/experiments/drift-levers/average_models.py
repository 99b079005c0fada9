# Offline analysis (docs/EXPERIMENTS.md, "Three more levers"): would serving a moving average of the global
# model steady its accuracy? Replays a run whose coordinator kept every version (--keep-models 0): an exponential
# moving average in time with constant tau of the global versions, scored every 0.5 s on every client's test rows
# and combined as EvaluationCombination does (answers capped at 4x the median, 2 highest/lowest trimmed).
# Usage: python3 average_models.py RUN/strata RUN/data TAUS LOSS_TARGET   (TAUS: comma-separated seconds, 0 = raw)
import glob, json, math, os, sqlite3, sys
import numpy as np
def load(run, data):
    db = sqlite3.connect(os.path.join(run, "coordinator.sqlite"))
    pre = json.loads(db.execute("select value from meta where key='preprocessing'").fetchone()[0])
    center = np.array([f["center"] for f in pre["features"]]); scale = np.array([f["scale"] for f in pre["features"]])
    clients = {}
    for f in sorted(glob.glob(os.path.join(data, "client-*.sqlite"))):
        c = sqlite3.connect(f)
        rows = np.array(c.execute("select * from samples where split='test'").fetchall(), dtype=object)
        X = (rows[:, 1:61].astype(np.float64) - center) / scale; y = rows[:, 61].astype(int)
        clients["agent-" + os.path.basename(f)[7:9]] = (X, y)
    return db, clients, pre
def params(db, v):
    r = db.execute("select parameters from modelVersions where version=?", (v,)).fetchone()
    if r is None or len(r[0]) == 0: return None
    return np.frombuffer(r[0], dtype='<f4').astype(np.float64)
def evaluate(p, clients):
    W = p[:600].reshape(60, 10); b = p[600:]; res = {}
    for cid, (X, y) in clients.items():
        z = X @ W + b; z -= z.max(1, keepdims=True); lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        res[cid] = (len(y), (lp.argmax(1) == y).mean(), -lp[np.arange(len(y)), y].mean())
    return res
def combine(res, ratio=4.0, trim=2):
    # EvaluationCombination: answers' rows capped at ratio x the (lower) median; accuracy is the weighted mean
    # after dropping the 2 lowest and 2 highest accuracies, loss the same trimmed by loss
    rs = list(res.values()); ns = sorted(r[0] for r in rs); cap = ratio * ns[(len(ns) - 1) // 2]
    def mean(i):
        kept = sorted(rs, key=lambda r: r[i])[trim:len(rs) - trim]
        w = np.array([min(r[0], cap) for r in kept]); v = np.array([r[i] for r in kept])
        return (w * v).sum() / w.sum()
    return mean(1), mean(2)
run, data = sys.argv[1], sys.argv[2]; taus = [float(t) for t in sys.argv[3].split(",")]
target = float(sys.argv[4]) if len(sys.argv) > 4 else None
db, clients, pre = load(run, data)
t0 = float(db.execute("select value from meta where key='trainingStartedAt'").fetchone()[0])
rows = db.execute("select version, createdAt from modelVersions where length(parameters) > 0 and version > 0 order by version").fetchall()
avg = {tau: None for tau in taus}; last_t = None; nextEval = 0.0; out = []
for v, c in rows:
    t = c - t0; p = params(db, v)
    for tau in taus:
        if avg[tau] is None or tau == 0: avg[tau] = p.copy()
        else:
            a = 1 - math.exp(-(t - last_t) / tau); avg[tau] += a * (p - avg[tau])
    last_t = t
    if t >= nextEval:
        nextEval = t + 0.5
        row = [v, t] + [x for tau in taus for x in combine(evaluate(avg[tau], clients))]
        out.append(row)
print("taus", taus)
for i, tau in enumerate(taus):
    acc = np.array([r[2 + 2*i] for r in out]); loss = np.array([r[3 + 2*i] for r in out]); ts = np.array([r[1] for r in out])
    late = ts >= 40
    ttl = next((r[1] for r in out if target is not None and r[3 + 2*i] <= target), None)
    # largest 10-s window spread after 20 s
    spreads = [np.ptp(acc[(ts >= s) & (ts < s + 10)]) for s in np.arange(20, 40.01, 1) if ((ts >= s) & (ts < s + 10)).sum() > 3]
    print(f"tau {tau:5}: late acc {acc[late].min():.4f}-{acc[late].max():.4f} ({100*np.ptp(acc[late]):.2f} pt) loss {loss[late].min():.3f}-{loss[late].max():.3f}; "
          f"worst 10s spread after 20s {100*max(spreads):.2f} pt; time to loss {target}: {ttl}; final {acc[-1]:.4f}/{loss[-1]:.3f}")
