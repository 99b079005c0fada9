# Pools the runs of variants over matrix output folders: per cell, every run's time to the loss target, final accuracy,
# and the last 10 s (elapsed >= 40 s) accuracy range and loss range.
# Usage: python3 pool.py NAME FOLDER:MODE[,FOLDER:MODE...] [NAME FOLDER:MODE...]  (see pooled.md for the calls used)
import csv, glob, statistics as st, sys
def runs(folder, mode):
    out = {}
    for f in glob.glob(f'{folder}/c*-*/*/run-*/results.csv'):
        cell, pat = f.split('/')[-4:-2]
        for r in csv.DictReader(open(f)):
            if r['mode'] != mode: continue
            curve = list(csv.DictReader(open(f.replace('results.csv', f'curve-{mode}.csv'))))
            late = [c for c in curve if float(c['elapsed_seconds']) >= 40]
            a = [float(c['accuracy']) for c in late]
            out.setdefault((cell, pat), []).append(dict(ttl=float(r['time_to_loss_target_s']) if r['time_to_loss_target_s'] else None,
                final=float(r['final_accuracy']), spread=100 * (max(a) - min(a)), loss=max(float(c['loss']) for c in late)))
    return out
variants = [(name, {}) for name in sys.argv[1::2]]
for (name, d), specs in zip(variants, sys.argv[2::2]):
    for spec in specs.split(','):
        folder, mode = spec.split(':')
        for k, v in runs(folder, mode).items(): d.setdefault(k, []).extend(v)
cells = sorted(set(k for _, d in variants for k in d))
print('| cell | pattern | variant | runs | time to loss target (s), each run | final accuracy, median | late spread (pt), each run | late loss, median of max |')
print('|---|---|---|---|---|---|---|---|')
for c in cells:
    for name, d in variants:
        rs = d.get(c, [])
        if not rs: continue
        ttl = ', '.join('%.1f' % r['ttl'] if r['ttl'] is not None else 'missed' for r in rs)
        print(f"| {c[0]} | {c[1]} | {name} | {len(rs)} | {ttl} | {st.median(r['final'] for r in rs):.3f} | "
              f"{', '.join('%.1f' % r['spread'] for r in rs)} | {st.median(r['loss'] for r in rs):.3f} |")
