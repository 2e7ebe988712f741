"""Shared-memory wavefronts of the wide SGEMMs (Wide, Wide16) and the tiled one, counted from their index formulas.

Why: a GPU serves a warp's shared access in wavefronts; threads that touch different 4-byte words of
one bank (of 32) take a wavefront each, identical addresses are broadcast. The wide kernels' inner
loop reads 16-byte fragments, and their slices are stored either as one 16-byte vector a thread
(the operand's contiguous dimension runs along the tile) or as four scalars down k (it runs along
k: A in NN and NT, B in NT and TT), which conflict when the tile's rows are 128 floats apart (every
row starts in bank 0). This script counts the wavefronts a warp spends per 8-deep slice for each
layout and row stride, with no GPU: the model is the bank rule above, applied to every address a
warp's instruction touches (a 16-byte access covers 4 consecutive banks). The tiled kernel (16x16
threads, a 64x64 tile, 16-deep slices of scalars) has the same question for a 16-deep slice.
Run: python3 scripts/smem_banks.py"""

BANKS = 32


def wavefronts(addresses, width):
    """Wavefronts one warp instruction takes: addresses are float indices (one per thread), width 1 or 4 floats."""
    words = {}
    for a in set(addresses):
        for w in range(a, a + width):
            words.setdefault(w % BANKS, set()).add(w)
    return max(len(v) for v in words.values())


def slice_wavefronts(layout_a_rows, layout_b_rows, stride):
    """Per warp (threads 0..31 of a 16x16 group), one 8-deep slice: (stores, fragment loads)."""
    warp = range(32)
    stores = 0
    for rows_k in (layout_a_rows, layout_b_rows):
        if rows_k:  # contiguous along k: thread tid stores m = tid / 2, k = (tid % 2) * 4 + j, j = 0..3
            for j in range(4):
                stores += wavefronts([((t % 2) * 4 + j) * stride + t // 2 for t in warp], 1)
        else:       # contiguous along the tile: one 16-byte store at k = tid / 32, m = (tid % 32) * 4
            stores += wavefronts([(t // 32) * stride + (t % 32) * 4 for t in warp], 4)
    loads = 0
    for kk in range(8):
        for half in (0, 64):
            # A fragment: rows ty * 4 (+64), ty = tid / 16; B fragment: columns tx * 4 (+64), tx = tid % 16.
            loads += wavefronts([kk * stride + half + (t // 16) * 4 for t in warp], 4)
            loads += wavefronts([kk * stride + half + (t % 16) * 4 for t in warp], 4)
    return stores, loads


def tiled_slice_wavefronts(a_rows_k, b_rows_k, stride, depth=16, tile=64, threads=256):
    """Per warp (threads 0..31 of 16x16), one 16-deep slice of the tiled kernel: (stores, loads)."""
    warp = range(32)
    stores = 0
    for rows_k in (a_rows_k, b_rows_k):
        for l in range(depth * tile // threads):
            idx = [t + l * threads for t in warp]
            # Contiguous along k: k = idx % depth, m = idx / depth; else k = idx / tile, m = idx % tile.
            addr = [(i % depth) * stride + i // depth if rows_k else (i // tile) * stride + i % tile for i in idx]
            stores += wavefronts(addr, 1)
    loads = 0
    for kk in range(depth):
        for p in range(4):
            loads += wavefronts([kk * stride + t // 16 + p * 16 for t in warp], 1)  # A: rows ty + p * 16
            loads += wavefronts([kk * stride + t % 16 + p * 16 for t in warp], 1)   # B: columns tx + q * 16
    return stores, loads


def table(title, count, strides):
    """One table: for each layout, count(a_rows_k, b_rows_k, stride) -> (stores, loads) at each stride."""
    # Which operand is stored as scalars down k: A when it is row-major (NN, NT), B when transposed (NT, TT).
    layouts = {"NN": (True, False), "TN": (False, False), "NT": (True, True), "TT": (False, True)}
    print(title)
    print(f"{'layout':<8}" + "".join(f"{'row stride ' + str(st):>22}" for st in strides))
    for name, (a_rows, b_rows) in layouts.items():
        cells = [count(a_rows, b_rows, st) for st in strides]
        print(f"{name:<8}" + "".join(f"{f'{st_} + {ld} = {st_ + ld}':>22}" for st_, ld in cells))


if __name__ == "__main__":
    table("wavefronts per warp per 8-deep slice (stores + fragment loads)", slice_wavefronts, (128, 132))
    print()
    table("tiled kernel, 16x16 threads: wavefronts per warp per 16-deep slice (stores + loads)", tiled_slice_wavefronts, (64, 65))
