"""Per-kernel totals from a CubeCL profiling log.

Run on the GPU machine after a run with CubeCL's profiler on, e.g.
    CUBECL_DEBUG_LOG=/tmp/prof.txt CUBECL_DEBUG_OPTION=profile \
        .device/minference-gpu-bench --skip-checks --sizes none --llama 32768
    python3 benches/gpu/agg-profile.py /tmp/prof.txt
Prints the profiled total and the 30 kernels with the most time (generic arguments cut). The
profiler waits on every kernel, so the totals rank kernels; they are not a wall-clock split.
"""
import re,sys,collections
tot=collections.defaultdict(float); cnt=collections.Counter(); seq=[]
unit={'ns':1e-6,'µs':1e-3,'us':1e-3,'ms':1.0,'s':1000.0}
for line in open(sys.argv[1],errors='replace'):
    m=re.match(r"\| ([0-9.]+)(ns|µs|us|ms|s)\s*\| (.*)",line)
    if not m: continue
    ms=float(m.group(1))*unit[m.group(2)]
    name=m.group(3).strip()
    name=re.sub(r"<.*","",name)[:90]
    tot[name]+=ms; cnt[name]+=1
print("total profiled ms %.1f"%sum(tot.values()))
for n,t in sorted(tot.items(),key=lambda x:-x[1])[:30]:
    print("%10.1f ms %7d  %s"%(t,cnt[n],n))
