// Autotuning's table: for each product shape (M, N, K), the SGEMM choice (kernel, tiled group, K
// split, team of warps) that a timing run on this accelerator found fastest, and the host views that
// launch it.
//
// Why a table and not a rule: which kernel wins a seed-sized product turns on latencies (an L2 round
// trip per K slice summed, a barrier per slice, a graph node's gap) that no formula here predicts
// well, and a GPU's answer differs by card. Measuring the candidates once, where they will run,
// is what cuDNN's benchmark mode and XLA's autotuner do. The timing lives in Autograd.Core (it needs
// CUDA graphs); this file only records and applies the answer.
//
// How a choice is applied: each SGEMM entry point maps its host to ForShape(m, n, k), a copy of the
// host with the shape's choice as its settings (cached, so a replay allocates nothing). The rule
// stays in charge wherever a setting was pinned by hand, so tests and benchmarks that pin a kernel
// measure that kernel. The table is write-once per shape: a compiled step plans its scratch and
// captures its CUDA graph for the choice it saw, so the choice must not move under it.
using System.Collections.Concurrent;

namespace AutogradNet.Kernels;

/// <summary>
/// One way to run a product: the kernel, and for the tiled kernel its group and K split (in one launch
/// or two), for Large, Wide and Wide16 a K split (two launches), for the warp kernel its team of warps. Unused fields hold their neutral values (the host's
/// tiled group, split 1, one launch, team 1).
/// </summary>
/// <param name="Path">The kernel (not Auto).</param>
/// <param name="TiledGroup">The tiled kernel's group (threads along x, along y).</param>
/// <param name="SplitK">K slices of the tiled kernel (1: no split).</param>
/// <param name="SplitKInOneLaunch">Whether the slices are summed in the product's own launch.</param>
/// <param name="WarpTeam">Warps per 4x4 block of the warp kernel.</param>
public readonly record struct MatMulChoice(MatMulPath Path, (int X, int Y) TiledGroup, int SplitK = 1, bool SplitKInOneLaunch = true, int WarpTeam = 1)
{
    /// <inheritdoc/>
    public override string ToString() => Path switch
    {
        MatMulPath.Tiled when SplitK > 1 =>
            $"Tiled {TiledGroup.X}x{TiledGroup.Y}, split-K {SplitK} in {(SplitKInOneLaunch ? "one launch" : "two launches")}",
        MatMulPath.Tiled => $"Tiled {TiledGroup.X}x{TiledGroup.Y}",
        _ when MatMulKernels.Has128Tiles(Path) && SplitK > 1 => $"{Path}, split-K {SplitK} in two launches",
        MatMulPath.Warp when WarpTeam > 1 => $"Warp, teams of {WarpTeam} warps",
        _ => Path.ToString(),
    };
}

public sealed partial class KernelHost
{
    private readonly ConcurrentDictionary<(int M, int N, int K), MatMulChoice> _tuned;
    private readonly ConcurrentDictionary<(int Outer, int R, int Inner), int> _tunedChunks = new();
    private ConcurrentDictionary<(int M, int N, int K, bool Tail, bool Pair), KernelHost>? _views;
    private KernelHost? _root;
    private (int M, int N, int K) _viewShape;

    /// <summary>Environment variable that turns autotuning off (0) or on (1) for new hosts.</summary>
    public const string AutotuneVariable = "AUTOGRAD_AUTOTUNE";

    /// <summary>
    /// Whether Auto follows the tuned table (<see cref="Tuned"/>), and whether Graph.Compile times the
    /// candidates of each product it has not tuned yet. On by default on a GPU, off on the CPU
    /// accelerator (where the host SGEMM wins by 30-500x); AUTOGRAD_AUTOTUNE=0 or 1 overrides.
    /// The table is followed only while every other SGEMM setting is at its default: a setting pinned
    /// by hand keeps the rule. Set it before compiling steps.
    /// </summary>
    public bool Autotune { get; set; }

    /// <summary>The tiled group the accelerator's limits give (TiledGroup's initial value).</summary>
    public (int X, int Y) DefaultTiledGroup { get; }

    /// <summary>Whether Auto takes the tuned table's choices now: Autotune on and every other SGEMM setting at its default.</summary>
    public bool FollowsTuning =>
        Autotune && _root == null && MatMulPath == MatMulPath.Auto && MatMulSplitK is null && SplitKInOneLaunch
        && WarpMaxOutputs == 0 && WarpTeam is null && TiledGroup == DefaultTiledGroup && SumChunks is null;

    /// <summary>The choice recorded for the product C (M, N) with shared dimension K, or null.</summary>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public MatMulChoice? Tuned(int m, int n, int k) => _tuned.TryGetValue((m, n, k), out var c) ? c : null;

    /// <summary>The shapes tuned on this accelerator and their choices.</summary>
    public IReadOnlyDictionary<(int M, int N, int K), MatMulChoice> TunedShapes => _tuned;

    /// <summary>
    /// Records the choice for a shape. Once per shape: a second, different choice throws, because
    /// compiled steps planned their scratch and captured their launches for the first.
    /// </summary>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="choice">The choice; it must run on this accelerator.</param>
    public void SetTuned(int m, int n, int k, MatMulChoice choice)
    {
        With(choice); // validates it
        var kept = _tuned.GetOrAdd((m, n, k), choice);
        if (kept != choice)
            throw new InvalidOperationException(
                $"SetTuned: {m}x{n}x{k} was tuned to {kept} already; a shape's choice is set once, since compiled steps rely on it. " +
                "Use KernelHost.With(choice) to launch another choice.");
    }

    /// <summary>The chunk count recorded for a sum of (outer, r, inner) over r (Reduce.SumAxes), or null.</summary>
    /// <param name="outer">Product of the extents before the summed run.</param>
    /// <param name="r">Product of the summed extents.</param>
    /// <param name="inner">Product of the extents after the summed run.</param>
    public int? TunedSumChunks(int outer, int r, int inner) => _tunedChunks.TryGetValue((outer, r, inner), out var c) ? c : null;

    /// <summary>
    /// Records how many chunks a sum of (outer, r, inner) over r cuts its rows into; once per shape, as
    /// SetTuned (a compiled step's scratch was planned for it).
    /// </summary>
    /// <param name="outer">Product of the extents before the summed run.</param>
    /// <param name="r">Product of the summed extents.</param>
    /// <param name="inner">Product of the extents after the summed run.</param>
    /// <param name="chunks">Chunks, 1 to r.</param>
    public void SetTunedSumChunks(int outer, int r, int inner, int chunks)
    {
        if (chunks < 1 || chunks > Math.Max(1, r))
            throw new ArgumentOutOfRangeException(nameof(chunks), chunks, $"SetTunedSumChunks: {r} rows are cut into 1 to {Math.Max(1, r)} chunks.");
        var kept = _tunedChunks.GetOrAdd((outer, r, inner), chunks);
        if (kept != chunks)
            throw new InvalidOperationException($"SetTunedSumChunks: ({outer}, {r}, {inner}) was tuned to {kept} chunks already; a shape's choice is set once.");
    }

    /// <summary>A host on the same stream and kernels whose sums along a dim cut their rows into this many chunks (the tuner's trials).</summary>
    /// <param name="chunks">Chunks, at least 1.</param>
    public KernelHost WithSumChunks(int chunks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunks, 1);
        return new KernelHost(this, Stream) { SumChunks = chunks };
    }

    /// <summary>
    /// A host on the same stream and kernels whose settings pin this choice, whatever the shape (the
    /// tuner's trials; tests).
    /// </summary>
    /// <param name="choice">The kernel, group, split and team.</param>
    public KernelHost With(MatMulChoice choice)
    {
        var host = new KernelHost(this, Stream);
        host.Pin(choice);
        return host;
    }

    /// <summary>
    /// A host on the same stream and kernels that follows only these choices, every other SGEMM setting
    /// at its default (the tuner's trial of two products in one launch, each with its own choice).
    /// </summary>
    /// <param name="choices">A choice per shape (M, N, K).</param>
    public KernelHost WithChoices(IEnumerable<KeyValuePair<(int M, int N, int K), MatMulChoice>> choices)
    {
        var host = new KernelHost(this, Stream, table: new(choices))
        {
            MatMulPath = MatMulPath.Auto, MatMulSplitK = null, SplitKInOneLaunch = true, WarpMaxOutputs = 0, WarpTeam = null,
            TiledGroup = DefaultTiledGroup, Autotune = true,
        };
        foreach (var c in host._tuned.Values) With(c); // validates each
        return host;
    }

    /// <summary>A host like this one that follows the rule, not the tuned table.</summary>
    public KernelHost WithoutTuning() => new(this, Stream) { Autotune = false };

    /// <summary>
    /// The host to launch the product C (M, N), K on: a view that pins the shape's tuned choice while
    /// this host follows the table, else this host. A view asked about another shape answers as its root.
    /// </summary>
    internal KernelHost ForShape(int m, int n, int k)
    {
        if (_root != null) return _viewShape == (m, n, k) ? this : _root.ForShape(m, n, k);
        if (!FollowsTuning || !_tuned.TryGetValue((m, n, k), out var choice)) return this;
        var views = _views ?? Interlocked.CompareExchange(ref _views, new(), null) ?? _views;
        var key = (m, n, k, SumTailInLaunch, PairProducts);
        if (views.TryGetValue(key, out var view))
        {
            view.TakeSwitches(this);
            return view;
        }
        view = new KernelHost(this, Stream, shareLaunches: true) { _root = this, _viewShape = (m, n, k) };
        view.Pin(choice);
        return views.GetOrAdd(key, view);
    }

    /// <summary>Whether this host launches a tuned choice (a view made by ForShape).</summary>
    internal bool IsTunedView => _root != null;

    private void Pin(MatMulChoice c)
    {
        if (c.Path == MatMulPath.Auto) throw new ArgumentException("MatMulChoice: the path must be a kernel, not Auto.");
        if (c.SplitK < 1 || c.WarpTeam < 1)
            throw new ArgumentException($"MatMulChoice: split {c.SplitK} and team {c.WarpTeam} must be at least 1.");
        TiledGroup = c.TiledGroup;
        MatMulPath = c.Path;
        MatMulSplitK = c.SplitK;
        SplitKInOneLaunch = c.SplitKInOneLaunch;
        WarpTeam = c.Path == MatMulPath.Warp ? c.WarpTeam : null;
        WarpMaxOutputs = 0;
        Autotune = false;
    }

    private static bool AutotuneFromEnvironment(bool isCpu) =>
        SwitchFromEnvironment(AutotuneVariable, unset: !isCpu, "the rule", "tune on this device", " (tune on GPUs)");
}
