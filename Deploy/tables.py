#!/usr/bin/env python3
"""Strata on real-looking tables: does a user's own table, split non-IID over three agents and trained with
default settings, reach what a central fit of the same model reaches? (issue 12, first "Done when")

Generates, with a fixed seed and from a known linear/softmax model (so that the model family is right),
four SQLite tables the way a real database holds them, each split over three agents non-IID and of
unequal sizes:

  credit    applicants(id INTEGER PRIMARY KEY, age, income, debt_ratio, accounts, late_payments, risk)
            risk TEXT 'approved'/'declined'; income stored as TEXT numerals (some padded with spaces, some
            empty text), late_payments as TEXT numerals (what `sqlite3 .import` makes), debt_ratio from
            1e-3; NULLs in income and debt_ratio; a few rows without a label. Three lenders of different
            customer ages (feature shift). softmax, 2 classes.
  rare      transactions(id INTEGER PRIMARY KEY, amount, distance_km, merchant_risk, account_age_days,
            card_present, fraud): about 5 % positives, fraud 0/1, card_present 'yes'/'no', merchant_risk
            1e-3..1e-1, amount up to 1e5; NULLs in distance_km. Label skew: the positives sit mostly at the
            first agent. softmax, 2 classes.
  houses    houses(id INTEGER PRIMARY KEY, area_sqft, lot_m2, rooms, year_built, distance_km, crime_rate,
            price): price in the hundreds of thousands, lot_m2 up to 1e5 (TEXT numerals, NULLs),
            crime_rate 1e-3..1e-1, year_built TEXT numerals. Regions city / suburbs / rural (feature
            shift). linear.
  segments  customers(id INTEGER PRIMARY KEY, visits_per_month, avg_basket, tenure_days, returns_ratio,
            annual_spend, web_share, segment): segment TEXT bronze/silver/gold/platinum, avg_basket TEXT
            numerals, annual_spend up to 1e6, returns_ratio from 1e-3 with NULLs. Label skew (Dirichlet
            class mixes per agent). softmax, 4 classes.

Per agent a quarter of its rows is held out (never in its database) and pooled: the test rows. The agent
itself puts --test-fraction (0.2) of its table aside for the federation's evaluations with its seeded hash
of the row id; the script recomputes that split (and checks it against the agent's 'data loaded' log line),
so the central reference trains on exactly the agents' training rows.

For each table it starts a coordinator on free loopback ports (--port 0, --ready-file) and three
strata-agents with DEFAULT settings, as a user would: only the flags a table needs (the comment above
TABLES says which and why). After --duration seconds it exports the best version with
`stratactl export-model best` (the coordinator must be running for that, so the script, not
--max-duration, ends the run: --max-duration is set --duration + 60 as a backstop), stops the coordinator
(SIGTERM: drain) and applies the export — weights, and the preprocessing in its JSON: centers, scales,
fills, target transform, label vocabulary — to the raw test rows with NumPy, as docs/OPERATIONS.md
describes. The central reference is the same model fitted with NumPy on the pooled training rows (NULLs
filled with the pooled training mean): least squares for linear; unregularised softmax regression by
Newton's method to convergence (Strata's model has no L2 term either).

Bars (issue 12): classification accuracy and macro-F1 at most 2 points below the central fit's; regression
RMSE at most 5 % above it. Also reported: log-loss / R², MAE; for two classes the positive class's F1 and
the AUC; the same for the latest version. A federation "over three agents" must use all three: a table where
an agent had no update committed (read from the coordinator's state after it exited) fails even if the bar
is met. The preprocessing the federation fixed is compared with the pooled statistics of the training rows,
and a column that differs (an agent's summary left out by the statistics phase) is reported.

Every process it starts is stopped however it ends (atexit, SIGINT/SIGTERM, and a parent-death signal).
Progress lines go to stdout; --json FILE writes every table's numbers.

Examples:
  Deploy/tables.py                                   # all four tables, 60 s each
  Deploy/tables.py --tables houses --duration 90 --keep --run-dir /tmp/tables
  Deploy/tables.py --tables credit --coordinator-arg=--local-epochs --coordinator-arg=1   # try a setting
  Deploy/tables.py --tables houses --pooled-preprocessing --coordinator-arg=--min-clients --coordinator-arg=3
                                                     # diagnosis: the pooled statistics instead of the phase's

Exit status: 0 every table met its bar; 1 at least one missed it (which, and by how much, is printed);
2 bad arguments; 3 setup failed (PKI, data, a coordinator that never listened, an agent that stopped, no
exportable model); 130/143 interrupted.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runkit import REPO, procs, require_programs, run_root, say  # noqa: E402  (progress lines; every process started is stopped on exit)

AGENTS = 3
HOLDOUT = 0.25          # of each agent's rows, kept out of its database: the test rows
AGENT_TEST_FRACTION = 0.2   # strata-agent's --test-fraction default: its evaluation rows
ACCURACY_BAR = 0.02     # points (as a fraction) below the central fit
RMSE_BAR = 0.05         # relative

class SetupError(Exception):
    pass


# ------------------------------------------------------------------------------------------------ tables
#
# A table is generated as a pool of rows: true feature values (float), a mask of the values to store as
# NULL, a label (class index or target; -1 / NaN for a missing label), and the agent each row belongs to.
# How each column is stored (INTEGER, REAL, TEXT numerals) is part of the table's spec.

class Column:
    def __init__(self, name, decl, store):
        self.name, self.decl, self.store = name, decl, store   # store: 'int', 'real', 'text', 'bool'


class Table:
    def __init__(self, key, name, columns, label, decl_label, model, classes, x, missing, y, agent, labels=None,
                 description=""):
        self.key, self.name, self.columns, self.label, self.decl_label = key, name, columns, label, decl_label
        self.model, self.classes, self.x, self.missing, self.y, self.agent = model, classes, x, missing, y, agent
        self.labels = labels            # text label of each class index (None: numeric labels)
        self.description = description

    @property
    def features(self):
        return len(self.columns)


def logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def standard(v):
    return (v - v.mean()) / v.std()


def sample_softmax(rng, logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(len(p))[:, None]
    return (u > np.cumsum(p, axis=1)).sum(axis=1)


def shifted_groups(rng, key, sizes, noise):
    """Agent of each row by a feature shift: rows sorted by key plus noise, cut into groups of these shares."""
    order = np.argsort(standard(key) + noise * rng.standard_normal(len(key)))
    agent = np.empty(len(key), dtype=np.int64)
    cuts = np.round(np.cumsum(sizes) / np.sum(sizes) * len(key)).astype(int)
    start = 0
    for a, end in enumerate(cuts):
        agent[order[start:end]] = a
        start = end
    return agent


def label_skewed_groups(rng, y, mix):
    """Agent of each row by a label skew: a row of class k goes to agent a with probability mix[k][a]."""
    mix = np.asarray(mix, dtype=np.float64)
    mix = mix / mix.sum(axis=1, keepdims=True)
    u = rng.random(len(y))[:, None]
    return (u > np.cumsum(mix[y], axis=1)).sum(axis=1)


def make_credit(rng, n):
    age = np.clip(np.round(rng.normal(42, 13, n)), 18, 85)
    income = np.exp(rng.normal(np.log(52000) + 0.012 * (age - 42), 0.55, n))          # ~8e3 .. 1e6
    debt_ratio = np.round(np.clip(rng.beta(1.6, 4.0, n) * 1.3, 0.001, None), 3)       # 0.001 .. 1.2
    accounts = rng.poisson(3 + (age - 18) / 15, n).astype(np.float64)
    late = rng.poisson(0.4 + 1.2 * debt_ratio, n).astype(np.float64)
    logit = (0.4 + 0.35 * (age - 42) / 13 + 0.9 * (income - 60000) / 35000 - 1.3 * (debt_ratio - 0.35) / 0.22
             + 0.15 * (accounts - 5.5) / 2.5 - 0.9 * (late - 0.85) / 0.95)
    y = (rng.random(n) >= logistic(logit)).astype(np.int64)      # 0 approved, 1 declined
    x = np.column_stack([age, income, debt_ratio, accounts, late])
    missing = np.zeros_like(x, dtype=bool)
    missing[:, 1] = rng.random(n) < 0.02
    missing[:, 2] = rng.random(n) < 0.03
    y[rng.random(n) < 0.004] = -1                                 # a few rows without a label
    agent = shifted_groups(rng, age, [0.45, 0.35, 0.20], 0.4)     # three lenders: young, middle, older customers
    columns = [Column("age", "INTEGER", "int"), Column("income", "TEXT", "text"), Column("debt_ratio", "REAL", "real"),
               Column("accounts", "INTEGER", "int"), Column("late_payments", "TEXT", "text")]
    return Table("credit", "applicants", columns, "risk", "TEXT", "softmax", 2, x, missing, y, agent,
                 labels=["approved", "declined"],
                 description="text labels approved/declined, TEXT numerals, NULLs, lenders by customer age")


def make_rare(rng, n):
    amount = np.round(np.exp(rng.normal(np.log(60), 1.1, n)), 2)                    # ~1 .. 1e5
    distance = np.round(np.exp(rng.normal(np.log(12), 1.0, n)), 1)
    merchant_risk = np.round(np.clip(rng.beta(1.2, 60, n), 0.001, None), 4)          # 0.001 .. 0.1
    account_age = np.round(rng.uniform(1, 5000, n))
    card_present = (rng.random(n) < 0.7).astype(np.float64)
    # linear in the raw values (the model family is right); per standard deviation about +1.3, +0.9, +1.3, -1.0, -1.8
    score = (amount / 80 + distance / 18 + merchant_risk / 0.015 - account_age / 1450 - 1.8 * card_present)
    lo, hi = -20.0, 20.0
    for _ in range(60):                                          # intercept for 5 % positives
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if logistic(mid + score).mean() < 0.05 else (lo, mid)
    y = (rng.random(n) < logistic(lo + score)).astype(np.int64)
    x = np.column_stack([amount, distance, merchant_risk, account_age, card_present])
    missing = np.zeros_like(x, dtype=bool)
    missing[:, 1] = rng.random(n) < 0.02
    agent = label_skewed_groups(rng, y, [[0.40, 0.35, 0.25], [0.70, 0.22, 0.08]])   # positives mostly at agent 1
    columns = [Column("amount", "REAL", "real"), Column("distance_km", "REAL", "real"),
               Column("merchant_risk", "REAL", "real"), Column("account_age_days", "INTEGER", "int"),
               Column("card_present", "TEXT", "bool")]
    return Table("rare", "transactions", columns, "fraud", "INTEGER", "softmax", 2, x, missing, y, agent,
                 description="5 % positives, label-skewed, yes/no column, NULLs")


def make_houses(rng, n):
    region = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])                                 # city, suburbs, rural
    distance = np.round(np.exp(rng.normal(np.log([3.0, 12.0, 40.0])[region], 0.45)), 2)
    area = np.round(np.exp(rng.normal(np.log([900, 1600, 2200])[region], 0.3)))
    lot = np.round(np.exp(rng.normal(np.log([150, 800, 12000])[region], 0.8)), 1)   # 1e1 .. 1e5 m2
    rooms = np.clip(np.round(area / 450 + rng.normal(0, 0.8, n)), 1, 12)
    year = np.round(rng.uniform(1900, 2023, n))
    crime = np.round(np.clip(np.exp(rng.normal(np.log([0.03, 0.012, 0.004])[region], 0.5)), 0.001, None), 4)
    price = (60000 + 190 * area + 2.5 * lot + 9000 * rooms + 700 * (year - 1950) - 2600 * distance - 2.0e6 * crime
             + rng.normal(0, 38000, n))
    x = np.column_stack([area, lot, rooms, year, distance, crime])
    missing = np.zeros_like(x, dtype=bool)
    missing[:, 1] = rng.random(n) < 0.03
    columns = [Column("area_sqft", "INTEGER", "int"), Column("lot_m2", "TEXT", "text"), Column("rooms", "INTEGER", "int"),
               Column("year_built", "TEXT", "text"), Column("distance_km", "REAL", "real"), Column("crime_rate", "REAL", "real")]
    return Table("houses", "houses", columns, "price", "REAL", "linear", 1, x, missing, np.round(price, -2), region,
                 description="price target ~1e5..1e6, regions city/suburbs/rural, TEXT numerals, NULLs")


SEGMENTS = ["bronze", "silver", "gold", "platinum"]


def make_segments(rng, n):
    visits = np.round(np.exp(rng.normal(np.log(4), 0.6, n)), 1)
    basket = np.round(np.exp(rng.normal(np.log(45), 0.5, n)), 2)
    tenure = np.round(rng.uniform(10, 4000, n))
    returns = np.round(np.clip(rng.beta(1.3, 20, n), 0.001, None), 3)                # 0.001 .. 0.3
    spend = np.round(visits * 12 * basket * np.exp(rng.normal(0, 0.3, n)), 2)         # 1e2 .. 1e6
    web = np.round(rng.beta(2, 2, n), 3)
    z = np.column_stack([standard(visits), standard(basket), standard(tenure), standard(returns), standard(spend), standard(web)])
    w = np.array([[-1.2, -0.3, 0.5, 1.0],    # visits
                  [-0.8, -0.2, 0.3, 0.7],    # basket
                  [-0.9, 0.0, 0.4, 0.5],     # tenure
                  [0.6, 0.2, -0.3, -0.5],    # returns
                  [-1.0, -0.3, 0.4, 1.0],    # spend
                  [0.0, 0.4, 0.1, -0.5]])    # web share
    semantic = sample_softmax(rng, 1.6 * (z @ w) + np.array([0.6, 0.4, 0.0, -0.8]))        # bronze, silver, gold, platinum
    x = np.column_stack([visits, basket, tenure, returns, spend, web])
    missing = np.zeros_like(x, dtype=bool)
    missing[:, 3] = rng.random(n) < 0.03
    mix = [[0.60, 0.30, 0.10], [0.35, 0.45, 0.20], [0.20, 0.40, 0.40], [0.10, 0.30, 0.60]]    # per class: agents
    agent = label_skewed_groups(rng, semantic, mix)
    labels = sorted(SEGMENTS)                      # the federation numbers text labels by the sorted vocabulary
    y = np.array([labels.index(SEGMENTS[k]) for k in semantic], dtype=np.int64)
    columns = [Column("visits_per_month", "REAL", "real"), Column("avg_basket", "TEXT", "text"),
               Column("tenure_days", "INTEGER", "int"), Column("returns_ratio", "REAL", "real"),
               Column("annual_spend", "REAL", "real"), Column("web_share", "REAL", "real")]
    return Table("segments", "customers", columns, "segment", "TEXT", "softmax", 4, x, missing, y, agent,
                 labels=labels,
                 description="4 text labels, label-skewed, TEXT numerals, NULLs")


TABLES = {"credit": (make_credit, 6000), "rare": (make_rare, 12000), "houses": (make_houses, 6000),
          "segments": (make_segments, 6000)}

# What each table needs beyond the defaults, and why (everything else is default):
#   --features F        required: the model's width (the number of feature columns)
#   --classes K         softmax: the label count (default 10 would give a 10-output model)
#   --model linear      regression tables
#   agent --table T     the tables are not named 'samples'
#   agent --label-column C   the label is not named 'label'
#   agent --null-policy impute   the tables have NULLs; the default 'refuse' stops the agent at the first one
# (coordinator_argv and agent_argv below; plus what a script needs: certificates, --state, free ports.)


def cell(column, value, missing, rng):
    if missing:
        return "" if column.store == "text" and rng.random() < 0.5 else None      # empty text counts as NULL
    if column.store == "int":
        return int(value)
    if column.store == "real":
        return float(value)
    if column.store == "bool":
        return ("yes", "no")[0 if value else 1] if rng.random() < 0.8 else ("Yes", "No")[0 if value else 1]
    text = repr(float(value)) if value != int(value) else str(int(value))
    return f" {text} " if rng.random() < 0.1 else text           # a CSV import keeps stray spaces


def label_cell(table, y):
    if table.model == "linear":
        return None if np.isnan(y) else float(y)
    if y < 0:
        return None
    return table.labels[y] if table.labels else int(y)


def split_hash(rowids, seed=0, fraction=AGENT_TEST_FRACTION):
    """strata-agent's SampleDataSource.deterministicTest: SplitMix64 of the row id; True = evaluation row."""
    with np.errstate(over="ignore"):
        z = rowids.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


class Split:
    """A table's rows: per agent its database rows (with the agent's own train/eval split) and held-out rows."""

    def __init__(self, table, root, rng):
        self.table = table
        self.databases = []
        n = len(table.y)
        held = np.zeros(n, dtype=bool)
        self.train_idx, self.eval_idx, self.agent_rows = [], [], []
        for a in range(AGENTS):
            rows = np.flatnonzero(table.agent == a)
            rows = rows[rng.permutation(len(rows))]
            k = int(round(HOLDOUT * len(rows)))
            held[rows[:k]] = True
            kept = np.sort(rows[k:])                # database order: as generated
            path = os.path.join(root, "data", f"{table.key}-{a + 1}.sqlite")
            self.write(path, kept, rng)
            self.databases.append(path)
            rowid = np.arange(1, len(kept) + 1)
            is_eval = split_hash(rowid)
            labelled = self.labelled(kept)
            self.train_idx.append(kept[~is_eval & labelled])
            self.eval_idx.append(kept[is_eval & labelled])
            self.agent_rows.append(len(kept))
        self.test_idx = np.flatnonzero(held & self.labelled(np.arange(n)))
        self.train_all = np.concatenate(self.train_idx)

    def labelled(self, idx):
        y = self.table.y[idx]
        return ~np.isnan(y) if self.table.model == "linear" else y >= 0

    def write(self, path, rows, rng):
        t = self.table
        db = sqlite3.connect(path)
        cols = ", ".join(f"{c.name} {c.decl}" for c in t.columns)
        db.execute(f"CREATE TABLE {t.name} (id INTEGER PRIMARY KEY, {cols}, {t.label} {t.decl_label})")
        values = []
        for i, r in enumerate(rows):
            values.append((i + 1,) + tuple(cell(c, t.x[r, j], t.missing[r, j], rng) for j, c in enumerate(t.columns))
                          + (label_cell(t, t.y[r]),))
        marks = ", ".join("?" * (len(t.columns) + 2))
        db.executemany(f"INSERT INTO {t.name} VALUES ({marks})", values)
        db.commit()
        db.close()

    def describe(self):
        t = self.table
        parts = []
        for a in range(AGENTS):
            idx = self.train_idx[a]
            if t.model == "linear":
                parts.append(f"agent-{a + 1:02d} {self.agent_rows[a]} rows (mean {t.y[idx].mean():,.0f})")
            else:
                share = np.bincount(t.y[idx], minlength=t.classes) / len(idx)
                parts.append(f"agent-{a + 1:02d} {self.agent_rows[a]} rows (classes " + "/".join(f"{s:.2f}" for s in share) + ")")
        return "; ".join(parts) + f"; test {len(self.test_idx)} held-out rows"


# ------------------------------------------------------------------------------------------ models, metrics

def raw_matrix(table, idx):
    """The rows' feature values as a database holds them: NaN where NULL."""
    x = table.x[idx].astype(np.float64).copy()
    x[table.missing[idx]] = np.nan
    return x


class Central:
    """The reference: the same model fitted on the pooled training rows (NULLs filled with the pooled mean)."""

    def __init__(self, table, x, y):
        self.table = table
        self.fill = np.nanmean(x, axis=0)
        x = np.where(np.isnan(x), self.fill, x)
        self.center, self.scale = x.mean(axis=0), x.std(axis=0)     # only for conditioning: the fit is affine-invariant
        z = self.design(x)
        if table.model == "linear":
            self.beta, *_ = np.linalg.lstsq(z, y.astype(np.float64), rcond=None)
            self.iterations = 1
            self.gradient = float(np.abs(z.T @ (z @ self.beta - y) / len(y)).max() / max(1.0, np.abs(y).mean()))
        else:
            self.beta, self.iterations, self.gradient = softmax_newton(z, y.astype(np.int64), table.classes)

    def design(self, x):
        return np.column_stack([(x - self.center) / self.scale, np.ones(len(x))])

    def scores(self, x):
        x = np.where(np.isnan(x), self.fill, x)
        z = self.design(x)
        if self.table.model == "linear":
            return z @ self.beta
        return np.column_stack([z @ self.beta, np.zeros(len(z))])     # the last class is the reference


def softmax_newton(z, y, k, tol=1e-9, max_iter=200):
    """Unregularised multinomial logistic regression, K-1 free classes (the last is the reference), by Newton's
    method with backtracking; returns (beta (d+1)x(K-1), iterations, max |gradient|)."""
    n, d = z.shape
    m = k - 1
    beta = np.zeros((d, m))
    onehot = np.eye(k)[y][:, :m]

    def loss_of(b):
        s = np.column_stack([z @ b, np.zeros(n)])
        s -= s.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(axis=1)) - s[np.arange(n), y]))

    loss = loss_of(beta)
    g_max = np.inf
    for it in range(1, max_iter + 1):
        s = np.column_stack([z @ beta, np.zeros(n)])
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p = p[:, :m]
        g = z.T @ (p - onehot) / n                       # d x m
        g_max = float(np.abs(g).max())
        if g_max < tol:
            return beta, it, g_max
        h = np.zeros((d * m, d * m))
        for a in range(m):
            for b in range(m):
                w = p[:, a] * ((a == b) - p[:, b])
                h[a * d:(a + 1) * d, b * d:(b + 1) * d] = (z * w[:, None]).T @ z / n
        h += 1e-10 * np.eye(d * m)
        step = np.linalg.solve(h, g.T.reshape(-1)).reshape(m, d).T
        slope = float(np.sum(g * step))        # the loss falls at this rate along -step
        t = 1.0
        new = loss_of(beta - step)
        while new > loss - 1e-4 * t * slope and t > 1e-10:     # Armijo backtracking
            t /= 2
            new = loss_of(beta - t * step)
        beta = beta - t * step
        loss = new
    return beta, max_iter, g_max


class Exported:
    """A model exported by stratactl export-model: weight (features x outputs), bias, and the preprocessing of
    its JSON, applied as docs/OPERATIONS.md says: x' = ((x, or fill where missing) − center) / scale; scores
    x' @ weight + bias; a regression prediction mapped back through the target's scale and center."""

    def __init__(self, npz, meta):
        m = np.load(npz)
        with open(meta) as f:
            self.meta = json.load(f)
        # An MLP (--hidden): layer1.weight, layer1.bias, …; its activation in the metadata's architecture
        # ("mlp relu 5-16-2"). The linear kinds: weight and bias.
        self.layers = []
        while f"layer{len(self.layers) + 1}.weight" in m:
            k = len(self.layers) + 1
            self.layers.append((m[f"layer{k}.weight"].astype(np.float64), m[f"layer{k}.bias"].astype(np.float64)))
        if self.layers:
            self.activation = "tanh" if " tanh " in f" {self.meta.get('architecture', '')} " else "relu"
            self.weight = self.layers[0][0]
        else:
            self.weight = m["weight"].astype(np.float64)
            self.bias = m["bias"].astype(np.float64)
        p = self.meta.get("preprocessing") or {}
        feats = p.get("features") or [{"center": 0, "scale": 1, "fill": 0}] * self.weight.shape[0]
        self.center = np.array([f["center"] for f in feats], dtype=np.float64)
        self.scale = np.array([f["scale"] for f in feats], dtype=np.float64)
        self.fill = np.array([f.get("fill", f["center"]) for f in feats], dtype=np.float64)
        t = p.get("target") or {"center": 0, "scale": 1}
        self.target_center, self.target_scale = float(t["center"]), float(t["scale"])
        self.labels = list(p.get("labels") or [])
        self.names = list(p.get("featureNames") or [])

    def scores(self, x):
        x = np.where(np.isnan(x), self.fill, x)
        if self.layers:
            a = (x - self.center) / self.scale
            for i, (w, b) in enumerate(self.layers):
                a = a @ w + b
                if i < len(self.layers) - 1:
                    a = np.tanh(a) if self.activation == "tanh" else np.maximum(a, 0)
            if a.shape[1] == 1:   # --regression: the prediction, back in the target's units
                return a[:, 0] * self.target_scale + self.target_center
            return a
        s = ((x - self.center) / self.scale) @ self.weight + self.bias
        if s.shape[1] == 1:
            return s[:, 0] * self.target_scale + self.target_center
        return s


def classification_metrics(scores, y, k):
    s = scores - scores.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    pred = scores.argmax(axis=1)
    out = {"accuracy": float(np.mean(pred == y)), "logLoss": float(-np.mean(logp[np.arange(len(y)), y]))}
    f1 = []
    for c in range(k):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    out["macroF1"] = float(np.mean(f1))
    out["classF1"] = [round(v, 4) for v in f1]
    if k == 2:
        out["positiveF1"] = f1[1]
        out["auc"] = auc(np.exp(logp[:, 1]), y)
    return out


def auc(p, y):
    """Mann–Whitney: the probability that a positive row scores above a negative one (ties count half)."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sp = p[order]
    i = 0
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    npos, nneg = int(pos.sum()), int((~pos).sum())
    if npos == 0 or nneg == 0:
        return None
    return float((ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def regression_metrics(pred, y):
    r = pred - y
    return {"rmse": float(np.sqrt(np.mean(r * r))), "mae": float(np.mean(np.abs(r))),
            "r2": float(1 - np.sum(r * r) / np.sum((y - y.mean()) ** 2))}


# -------------------------------------------------------------------------------------------------- run

def run_checked(argv, what, env=None):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True, env=env)
    if r.returncode != 0:
        raise SetupError(f"{what} failed (status {r.returncode}):\n{r.stdout[-2000:]}")
    return r.stdout


def read_ready(path):
    ports = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            ports["agents"] = (parts[0], int(parts[1]))
        elif len(parts) == 3:
            ports[parts[0]] = (parts[1], int(parts[2]))
    return ports if "agents" in ports and "admin" in ports else None


def last_progress(stdout_path):
    try:
        with open(stdout_path) as f:
            lines = [l.strip() for l in f.read().splitlines() if l.strip().startswith("version")]
    except OSError:
        return None
    return lines[-1] if lines else None


def agent_loaded(log_path):
    """(train, test) from the agent's 'data loaded' log line, or None."""
    try:
        with open(log_path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"data loaded.*?test=(\d+).*?train=(\d+)", text)
    return (int(m.group(2)), int(m.group(1))) if m else None


def coordinator_argv(args, table, run_dir, pki, ready):
    argv = [os.path.join(args.bin, "strata-coordinator"),
            "--cert", f"{pki}/coordinator.crt", "--key", f"{pki}/coordinator.key", "--ca", f"{pki}/ca.crt",
            "--state", os.path.join(run_dir, "coordinator.sqlite"), "--port", "0", "--admin-port", "0", "--metrics-port", "0",
            "--ready-file", ready, "--summary-file", os.path.join(run_dir, "summary.json"),
            "--curve-csv", os.path.join(run_dir, "curve.csv"),
            # the script ends the run after --duration (export needs a running coordinator); this is a backstop
            "--max-duration", str(int(args.duration + 60)),
            "--features", str(table.features)]
    if table.model == "linear":
        argv += ["--model", "mlp", "--regression", "--hidden", args.hidden] if args.hidden else ["--model", "linear"]
    else:
        argv += ["--classes", str(table.classes)]
        if args.hidden:
            argv += ["--model", "mlp", "--hidden", args.hidden]
    return argv + args.coordinator_arg


def agent_argv(args, table, split, a, host, port, pki, run_dir):
    cid = f"agent-{a + 1:02d}"
    argv = [os.path.join(args.bin, "strata-agent"), "--coordinator", f"{host}:{port}", "--server-name", "localhost",
            "--cert", f"{pki}/agents/{cid}.crt", "--key", f"{pki}/agents/{cid}.key", "--ca", f"{pki}/ca.crt",
            "--database", split.databases[a], "--state", os.path.join(run_dir, f"{cid}.state.sqlite"),
            "--after-federation", "exit", "--table", table.name, "--label-column", table.label]
    if table.missing.any():
        argv += ["--null-policy", "impute"]
    return argv + args.agent_arg


def pooled_preprocessing(table, split, path):
    """The preprocessing a merge of every agent's summary gives: pooled mean and population sd of the training
    rows (NULLs left out), the target's for a regression, the sorted label vocabulary."""
    x = raw_matrix(table, split.train_all)
    mean, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    p = {"featureNames": [c.name for c in table.columns],
         "features": [{"center": float(m), "scale": float(d), "fill": float(m)} for m, d in zip(mean, sd)],
         "target": {"center": 0.0, "scale": 1.0, "fill": 0.0}, "labels": list(table.labels or [])}
    if table.model == "linear":
        y = table.y[split.train_all]
        p["target"] = {"center": float(y.mean()), "scale": float(y.std()), "fill": float(y.mean())}
    with open(path, "w") as f:
        json.dump(p, f, indent=1)


def run_table(args, root, table, split):
    run_dir = os.path.join(root, table.key)
    os.makedirs(run_dir, exist_ok=True)
    pki = os.path.join(root, "pki")
    ready = os.path.join(run_dir, "coordinator.addr")
    argv = coordinator_argv(args, table, run_dir, pki, ready)
    if args.pooled_preprocessing:
        pooled_preprocessing(table, split, os.path.join(run_dir, "pooled-preprocessing.json"))
        argv += ["--preprocessing-file", os.path.join(run_dir, "pooled-preprocessing.json")]
    with open(os.path.join(run_dir, "command.txt"), "w") as f:
        f.write(" ".join(argv) + "\n")
    say(f"{table.key}: coordinator " + " ".join(a for a in argv[argv.index("--features"):]))
    coordinator = procs.start(argv, os.path.join(run_dir, "coordinator.log"), os.path.join(run_dir, "coordinator.out"))
    deadline = time.monotonic() + 60
    ports = None
    while time.monotonic() < deadline:
        ports = read_ready(ready)
        if ports:
            break
        if coordinator.poll() is not None:
            raise SetupError(f"{table.key}: the coordinator exited with status {coordinator.returncode} before listening; see {run_dir}/coordinator.log")
        time.sleep(0.1)
    if not ports:
        procs.stop([coordinator])
        raise SetupError(f"{table.key}: the coordinator did not listen within 60 s; see {run_dir}/coordinator.log")
    started = time.monotonic()
    host, port = ports["agents"]
    agents = []
    for a in range(AGENTS):
        av = agent_argv(args, table, split, a, host, port, pki, run_dir)
        if a == 0:
            say(f"{table.key}: agents " + " ".join(av[av.index("--table"):]))
        agents.append(procs.start(av, os.path.join(run_dir, f"agent-{a + 1:02d}.log")))
    next_progress = time.monotonic() + args.progress
    checked = [False] * AGENTS
    while time.monotonic() - started < args.duration:
        time.sleep(0.2)
        if coordinator.poll() is not None:
            break
        for a, p in enumerate(agents):
            if not checked[a]:
                loaded = agent_loaded(os.path.join(run_dir, f"agent-{a + 1:02d}.log"))
                if loaded:
                    checked[a] = True
                    expect = (len(split.train_idx[a]), len(split.eval_idx[a]))
                    if loaded != expect:
                        raise SetupError(f"{table.key}: agent-{a + 1:02d} loaded train/test {loaded}, the script expected {expect}: "
                                         "its split is not the one recomputed here")
            if p.poll() is not None:
                raise SetupError(f"{table.key}: agent-{a + 1:02d} exited with status {p.returncode}; see {run_dir}/agent-{a + 1:02d}.log:\n"
                                 + tail(os.path.join(run_dir, f"agent-{a + 1:02d}.log")))
        if time.monotonic() >= next_progress:
            next_progress += args.progress
            line = last_progress(os.path.join(run_dir, "coordinator.out"))
            say(f"  {table.key} +{time.monotonic() - started:5.1f}s: {line or 'no evaluation yet'}")
    if coordinator.poll() is not None:
        raise SetupError(f"{table.key}: the coordinator ended before the script did (status {coordinator.returncode}); see {run_dir}/coordinator.log:\n"
                         + tail(os.path.join(run_dir, "coordinator.log")))
    exports = {}
    env = dict(os.environ, STRATACTL_CERT=f"{pki}/admins/operator.crt", STRATACTL_KEY=f"{pki}/admins/operator.key",
               STRATACTL_CA=f"{pki}/ca.crt", STRATACTL_COORDINATOR=f"{ports['admin'][0]}:{ports['admin'][1]}")
    for which in ("best", "latest"):
        out = os.path.join(run_dir, f"{which}.npz")
        text = run_checked([os.path.join(args.bin, "stratactl"), "export-model", which, "--out", out, "--force"],
                           f"{table.key}: stratactl export-model {which}", env=env)
        exports[which] = Exported(out, out[:-4] + ".json")
        if which == "best":
            say(f"  {table.key}: {text.strip()}")
    wall = time.monotonic() - started
    procs.stop([coordinator], grace=30)
    # A drained coordinator tells its agents to come back later (goodbye with retry-after): they would retry.
    procs.stop(agents, grace=10)
    summary = {}
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        pass
    return exports, summary, wall, contributions(run_dir)


REFUSAL_CODES = {100: "shape-mismatch", 101: "non-finite-value", 102: "norm-too-large", 103: "unknown-task",
                 104: "too-stale", 105: "wrong-client", 106: "invalid-update", 107: "over-share"}


def contributions(run_dir):
    """Per agent: updates committed and refused (by code name), from the coordinator's state after it exited."""
    out = {f"agent-{a + 1:02d}": {"committed": 0, "refused": {}} for a in range(AGENTS)}
    try:
        db = sqlite3.connect(f"file:{os.path.join(run_dir, 'coordinator.sqlite')}?mode=ro", uri=True)
        try:
            for client, n in db.execute("SELECT clientID, COUNT(*) FROM committedUpdates GROUP BY clientID"):
                out.setdefault(client, {"committed": 0, "refused": {}})["committed"] = n
            for client, code, n in db.execute("SELECT clientID, code, COUNT(*) FROM refusedUpdates GROUP BY clientID, code"):
                out.setdefault(client, {"committed": 0, "refused": {}})["refused"][REFUSAL_CODES.get(code, str(code))] = n
        finally:
            db.close()
    except sqlite3.Error as e:
        return {"error": str(e)}
    return out


def tail(path, n=1500):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def measure(table, split, exports):
    xtr, ytr = raw_matrix(table, split.train_all), table.y[split.train_all]
    xte, yte = raw_matrix(table, split.test_idx), table.y[split.test_idx]
    central = Central(table, xtr, ytr)
    result = {"table": table.key, "sqlTable": table.name, "model": table.model, "classes": table.classes,
              "features": [c.name for c in table.columns], "trainRows": int(len(ytr)), "testRows": int(len(yte)),
              "centralIterations": central.iterations, "centralGradient": central.gradient}
    best = exports["best"]
    if best.names and best.names != [c.name for c in table.columns]:
        result["warning"] = f"exported feature names {best.names} differ from the table's"
    if table.model != "linear":
        # The export numbers text labels through its vocabulary; the reference numbers them by the sorted names.
        if table.labels and best.labels and best.labels != table.labels:
            raise SetupError(f"{table.key}: exported label vocabulary {best.labels}, expected {table.labels}")
        yte = yte.astype(np.int64)
        result["central"] = classification_metrics(central.scores(xte), yte, table.classes)
        for which, e in exports.items():
            result[which] = classification_metrics(e.scores(xte), yte, table.classes)
        result["centralTrain"] = classification_metrics(central.scores(xtr), ytr.astype(np.int64), table.classes)
        result["bestTrain"] = classification_metrics(best.scores(xtr), ytr.astype(np.int64), table.classes)
        gaps = {"accuracy": result["central"]["accuracy"] - result["best"]["accuracy"],
                "macroF1": result["central"]["macroF1"] - result["best"]["macroF1"]}
        result["gaps"] = gaps
        result["bar"] = f"accuracy and macro-F1 at most {ACCURACY_BAR * 100:g} points below central"
        result["passed"] = all(g <= ACCURACY_BAR + 1e-12 for g in gaps.values())
    else:
        result["central"] = regression_metrics(central.scores(xte), yte)
        for which, e in exports.items():
            result[which] = regression_metrics(e.scores(xte), yte)
        result["centralTrain"] = regression_metrics(central.scores(xtr), ytr)
        result["bestTrain"] = regression_metrics(best.scores(xtr), ytr)
        result["gaps"] = {"rmseRatio": result["best"]["rmse"] / result["central"]["rmse"] - 1}
        result["bar"] = f"RMSE at most {RMSE_BAR * 100:g} % above central"
        result["passed"] = result["gaps"]["rmseRatio"] <= RMSE_BAR + 1e-12
    result["bestVersion"] = best.meta.get("version")
    result["bestScore"] = {k: best.meta.get(k) for k in ("metric", "score", "answered", "asked")}
    result["latestVersion"] = exports["latest"].meta.get("version")
    result["preprocessing"] = {"centers": best.center.tolist(), "scales": best.scale.tolist(), "fills": best.fill.tolist(),
                               "target": [best.target_center, best.target_scale], "labels": best.labels}
    return result


def central_line(table, split):
    xtr, ytr = raw_matrix(table, split.train_all), table.y[split.train_all]
    xte, yte = raw_matrix(table, split.test_idx), table.y[split.test_idx]
    c = Central(table, xtr, ytr)
    if table.model == "linear":
        m = regression_metrics(c.scores(xte), yte)
        return f"central ({c.iterations} it): test RMSE {m['rmse']:,.0f} MAE {m['mae']:,.0f} R2 {m['r2']:.4f}; target sd {yte.std():,.0f}"
    m = classification_metrics(c.scores(xte), yte.astype(np.int64), table.classes)
    return (f"central ({c.iterations} it, |g| {c.gradient:.1e}): test accuracy {m['accuracy']:.4f} macro-F1 {m['macroF1']:.4f} "
            f"log-loss {m['logLoss']:.4f} class F1 {m['classF1']}" + (f" AUC {m['auc']:.4f}" if table.classes == 2 else "")
            + f"; majority {np.bincount(yte.astype(np.int64)).max() / len(yte):.4f}")


def judge_federation(r, table, split, best, contributed):
    """Two checks beside the bar. 'Over three agents' means every agent's updates count: an agent none of whose
    updates was committed fails the table. And the preprocessing is compared with the honest pooled statistics of
    the training rows (what merging every agent's summary gives): a column whose center or scale is off says that
    the statistics phase left an agent's summary out (reported, not judged: the bar shows what it costs)."""
    r["contributions"] = contributed
    silent = [a for a, c in contributed.items() if isinstance(c, dict) and c.get("committed", 0) == 0]
    r["agentsWithoutCommittedUpdates"] = silent
    x = raw_matrix(table, split.train_all)
    mean, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    off = []
    for j, c in enumerate(table.columns):
        if abs(best.center[j] - mean[j]) > 0.05 * sd[j] or abs(best.scale[j] / sd[j] - 1) > 0.05:
            off.append({"column": c.name, "center": best.center[j], "pooledMean": mean[j], "scale": best.scale[j], "pooledSd": sd[j]})
    r["preprocessingOffPooled"] = off
    r["barMet"] = r["passed"]
    if silent:
        r["passed"] = False


def fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def warnings_of(r):
    out = []
    for a in r.get("agentsWithoutCommittedUpdates", []):
        c = r["contributions"][a]
        refused = ", ".join(f"{k} {v}" for k, v in sorted(c["refused"].items())) or "none"
        out.append(f"{a} had no update committed (refused: {refused}): the federation trained without its rows")
    for o in r.get("preprocessingOffPooled", []):
        out.append(f"column {o['column']}: center {o['center']:.4g} scale {o['scale']:.4g}, but the pooled training rows have "
                   f"mean {o['pooledMean']:.4g} sd {o['pooledSd']:.4g} (an agent's summary left out by the statistics phase?)")
    return out


def line_of(r):
    if r.get("error"):
        return f"{r['table']}: setup failed: {r['error'].splitlines()[0]}"
    c, b, l = r["central"], r["best"], r["latest"]
    if r.get("regression", r["model"] == "linear"):
        return (f"{r['table']}: RMSE federated {b['rmse']:,.0f} vs central {c['rmse']:,.0f} ({r['gaps']['rmseRatio'] * 100:+.2f} %), "
                f"MAE {b['mae']:,.0f} vs {c['mae']:,.0f}, R2 {b['r2']:.4f} vs {c['r2']:.4f}; latest v{r['latestVersion']} RMSE {l['rmse']:,.0f} "
                f"-> {'PASS' if r['passed'] else 'MISS'}")
    extra = ""
    if r["classes"] == 2:
        extra = f", positive F1 {b['positiveF1']:.4f} vs {c['positiveF1']:.4f}, AUC {fmt(b['auc'])} vs {fmt(c['auc'])}"
    return (f"{r['table']}: accuracy federated {b['accuracy']:.4f} vs central {c['accuracy']:.4f} ({-r['gaps']['accuracy'] * 100:+.2f} pt), "
            f"macro-F1 {b['macroF1']:.4f} vs {c['macroF1']:.4f} ({-r['gaps']['macroF1'] * 100:+.2f} pt), "
            f"log-loss {b['logLoss']:.4f} vs {c['logLoss']:.4f}{extra}; latest v{r['latestVersion']} accuracy {l['accuracy']:.4f} "
            f"macro-F1 {l['macroF1']:.4f} log-loss {l['logLoss']:.4f} "
            f"-> {'PASS' if r['passed'] else 'MISS'}")


def report(results):
    print()
    print("Real-looking tables: the exported best federated model vs a central NumPy fit of the same model, on the pooled held-out rows")
    print(f"{'TABLE':<10}{'MODEL':<9}{'METRIC':<12}{'FEDERATED':>12}{'CENTRAL':>12}{'GAP':>10}  {'LOSS (fed / central)':<24}{'VERSION':>8}  RESULT")
    for r in results:
        if r.get("error"):
            print(f"{r['table']:<10}{'':<9}setup failed: {r['error'].splitlines()[0]}")
            continue
        b, c = r["best"], r["central"]
        if r.get("regression", r["model"] == "linear"):
            rows = [("RMSE", b["rmse"], c["rmse"], f"{r['gaps']['rmseRatio'] * 100:+.2f} %", ",.0f"),
                    ("R2", b["r2"], c["r2"], "", ".4f")]
            loss = f"{b['mae']:,.0f} / {c['mae']:,.0f} (MAE)"
        else:
            rows = [("accuracy", b["accuracy"], c["accuracy"], f"{-r['gaps']['accuracy'] * 100:+.2f} pt", ".4f"),
                    ("macro-F1", b["macroF1"], c["macroF1"], f"{-r['gaps']['macroF1'] * 100:+.2f} pt", ".4f")]
            if r["classes"] == 2:
                rows += [("pos. F1", b["positiveF1"], c["positiveF1"], "", ".4f"), ("AUC", b["auc"], c["auc"], "", ".4f")]
            loss = f"{b['logLoss']:.4f} / {c['logLoss']:.4f}"
        for i, (name, fv, cv, gap, spec) in enumerate(rows):
            head = (r["table"], r["model"]) if i == 0 else ("", "")
            print(f"{head[0]:<10}{head[1]:<9}{name:<12}{fmt(fv, spec):>12}{fmt(cv, spec):>12}{gap:>10}  "
                  f"{(loss if i == 0 else ''):<24}{(str(r['bestVersion']) if i == 0 else ''):>8}  "
                  f"{('PASS' if r['passed'] else 'MISS') if i == 0 else ''}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(REPO, ".build", "debug"), help="folder with strata-coordinator, strata-agent, stratactl")
    p.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated, from {', '.join(TABLES)} (default: all)")
    p.add_argument("--duration", type=float, default=60, help="seconds of each federation, from its coordinator's start (default 60)")
    p.add_argument("--seed", type=int, default=12, help="data seed (default 12)")
    p.add_argument("--coordinator-arg", action="append", default=[], help="extra coordinator flag (repeatable; --coordinator-arg=--flag)")
    p.add_argument("--agent-arg", action="append", default=[], help="extra flag for every agent (repeatable)")
    p.add_argument("--run-dir", help="folder for PKI, data and logs (default: a new temporary folder, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the folder (logs, databases, exports)")
    p.add_argument("--progress", type=float, default=10, help="seconds between progress lines (default 10)")
    p.add_argument("--json", help="write every table's numbers to this file")
    p.add_argument("--central-only", action="store_true", help="generate the tables and print the central fit only (no federation)")
    p.add_argument("--hidden", help="train every table with the built-in MLP of these hidden widths (--model mlp "
                                    "--hidden W,…; --regression for the regression table), judged against the same "
                                    "central softmax or least-squares fit")
    p.add_argument("--pooled-preprocessing", action="store_true",
                   help="diagnosis, not a default: give the coordinator --preprocessing-file with the pooled statistics of every "
                        "agent's training rows (what merging all summaries gives), instead of its statistics phase")
    args = p.parse_args()
    args.tables = [s.strip() for s in args.tables.split(",") if s.strip()]
    for s in args.tables:
        if s not in TABLES:
            p.error(f"unknown table '{s}' (choose from {', '.join(TABLES)})")
    if args.duration <= 0:
        p.error("--duration must be positive")
    args.bin = require_programs(p, args.bin, ("strata-coordinator", "strata-agent", "stratactl"))
    return args


def main():
    args = parse_args()
    root = run_root(args.run_dir, "strata-tables-")
    results = []
    status = 0

    def dump():
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"arguments": vars(args), "accuracyBar": ACCURACY_BAR, "rmseBar": RMSE_BAR, "tables": results}, f, indent=2)

    try:
        os.makedirs(os.path.join(root, "data"))
        say(f"dev PKI and tables {', '.join(args.tables)} (seed {args.seed}) in {root}; binaries {args.bin}")
        run_checked(["bash", os.path.join(REPO, "Certs", "strata-pki.sh"), "--dir", os.path.join(root, "pki"), "dev",
                     "--agents", str(AGENTS)], "strata-pki.sh")
        for key in args.tables:
            make, n = TABLES[key]
            rng = np.random.default_rng([args.seed, list(TABLES).index(key)])    # the same table whatever --tables selects
            table = make(rng, n)
            split = Split(table, root, rng)
            say(f"{key}: {table.name}, {table.description}; {split.describe()}")
            if args.central_only:
                say("  " + central_line(table, split))
                continue
            try:
                exports, summary, wall, contributed = run_table(args, root, table, split)
                r = measure(table, split, exports)
                r["regression"] = table.model == "linear"
                if args.hidden:
                    r["model"] = f"mlp {args.hidden}"   # judged against the central softmax or least-squares fit
                r.update(wallSeconds=round(wall, 1), stopReason=summary.get("reason"), summary=summary)
                judge_federation(r, table, split, exports["best"], contributed)
            except SetupError as e:
                say(f"error: {e}")
                r = {"table": key, "error": str(e), "passed": False}
                status = 3
            results.append(r)
            say("  " + line_of(r))
            for w in warnings_of(r):
                say(f"  {key}: WARNING: {w}")
            dump()
    except SetupError as e:
        say(f"error: {e}")
        status = 3
    finally:
        report(results)
        dump()
        if not args.keep and not args.run_dir:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"logs kept in {root}")
    if status == 0:
        missed = [r for r in results if not r["passed"]]
        for r in missed:
            gaps = ", ".join(f"{k} {-v * 100 if k != 'rmseRatio' else v * 100:+.2f}" + (" %" if k == "rmseRatio" else " pt")
                             for k, v in r["gaps"].items())
            why = f"bar {'met' if r['barMet'] else 'missed'} ({r['bar']}: {gaps})"
            if r["agentsWithoutCommittedUpdates"]:
                why += f"; no update committed from {', '.join(r['agentsWithoutCommittedUpdates'])}"
            say(f"MISSED: {r['table']}: {why}")
        status = 1 if missed else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
