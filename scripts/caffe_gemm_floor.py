"""Lower bound of BVLC Caffe's forward+backward time for a bench net on THIS
machine: only the sgemm calls Caffe's Convolution and InnerProduct layers
make (per image, per group, same shapes and transposes), through OpenBLAS
(numpy) with 2 threads. Ignores im2col/col2im, bias GEMMs and every other
layer, so real Caffe is slower than this. (Python adds ~1 us per call, which
matters only for nets with very many tiny GEMMs, e.g. depthwise groups.)

Usage: python3 scripts/caffe_gemm_floor.py lenet caffenet ...   (needs numpy;
the nets are read from ../shared/bench/<net>.prototxt)."""
import math, os, re, sys, time
import numpy as np

def blocks(txt):
    i = 0
    out = []
    for m in re.finditer(r'\blayer\s*\{', txt):
        depth, j = 1, m.end()
        while depth:
            if txt[j] == '{': depth += 1
            elif txt[j] == '}': depth -= 1
            j += 1
        out.append(txt[m.end():j-1])
    return out

def field(b, name, default=None, all_=False):
    vals = re.findall(r'\b%s\s*:\s*"?([\w./-]+)"?' % name, b)
    if all_: return vals
    return vals[0] if vals else default

def sim(path):
    txt = open(path).read()
    shapes = {}
    calls = []  # (name, pass, M, N, K, count)
    first_conv_bottoms = set()
    for b in blocks(txt):
        t = field(b, 'type'); name = field(b, 'name')
        bots = field(b, 'bottom', all_=True); tops = field(b, 'top', all_=True)
        if t == 'Input':
            dims = [list(map(int, re.findall(r'dim:\s*(\d+)', s))) for s in re.findall(r'shape\s*\{([^}]*)\}', b)]
            for tp, d in zip(tops, dims): shapes[tp] = d
            first_conv_bottoms.update(tops)
            continue
        x = shapes.get(bots[0]) if bots else None
        if t == 'Convolution':
            n, c, h, w = x
            o = int(field(b, 'num_output'))
            k = int(field(b, 'kernel_size', 0) or 0); kh = int(field(b, 'kernel_h', k)); kw = int(field(b, 'kernel_w', k))
            s = int(field(b, 'stride', 1)); sh = int(field(b, 'stride_h', s)); sw = int(field(b, 'stride_w', s))
            p = int(field(b, 'pad', 0)); ph = int(field(b, 'pad_h', p)); pw = int(field(b, 'pad_w', p))
            g = int(field(b, 'group', 1))
            oh = (h + 2*ph - kh)//sh + 1; ow = (w + 2*pw - kw)//sw + 1
            M, N, K = o//g, oh*ow, c//g*kh*kw
            calls.append((name, 'fwd', M, N, K, n*g))
            calls.append((name, 'dW', M, K, N, n*g))
            if bots[0] not in first_conv_bottoms:
                calls.append((name, 'dx', K, N, M, n*g))
            shapes[tops[0]] = [n, o, oh, ow]
        elif t == 'InnerProduct':
            n = x[0]; K = int(np.prod(x[1:])); o = int(field(b, 'num_output'))
            calls.append((name, 'fwd', n, o, K, 1)); calls.append((name, 'dW', o, K, n, 1)); calls.append((name, 'dx', n, K, o, 1))
            shapes[tops[0]] = [n, o]
        elif t == 'Pooling':
            n, c, h, w = x
            if field(b, 'global_pooling') == 'true':
                shapes[tops[0]] = [n, c, 1, 1]; continue
            k = int(field(b, 'kernel_size')); s = int(field(b, 'stride', 1)); p = int(field(b, 'pad', 0))
            oh = int(math.ceil((h + 2*p - k)/s)) + 1; ow = int(math.ceil((w + 2*p - k)/s)) + 1
            if p and (oh-1)*s >= h + p: oh -= 1
            if p and (ow-1)*s >= w + p: ow -= 1
            shapes[tops[0]] = [n, c, oh, ow]
        elif t == 'Concat':
            xs = [shapes[bb] for bb in bots]
            shapes[tops[0]] = [xs[0][0], sum(v[1] for v in xs)] + xs[0][2:]
        else:
            for tp in tops: shapes[tp] = x
    return calls

def bench(calls, reps=3):
    total = 0.0; per = {}
    for name, ps, M, N, K, cnt in calls:
        A = np.random.rand(M, K).astype(np.float32); B = np.random.rand(K, N).astype(np.float32)
        C = np.empty((M, N), np.float32)
        np.matmul(A, B, out=C)
        best = 1e9
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(cnt): np.matmul(A, B, out=C)
            best = min(best, time.perf_counter() - t)
        total += best; per[name] = per.get(name, 0) + best
    return total * 1e3, per

for net in sys.argv[1:]:
    calls = sim(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'bench', '%s.prototxt') % net)
    ms, per = bench(calls)
    print('%-14s Caffe GEMM-only floor on this machine: %.0f ms (%d GEMM shapes)' % (net, ms, len(calls)))
