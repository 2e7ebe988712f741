// The candidates autotuning times for one product shape, and the choice the rule would make. The
// tuner (Autograd.Core's Tune pass) launches each with KernelHost.With, checks its result, times it
// and records the fastest with KernelHost.SetTuned.
//
// Which candidates: the rule's own choice first (a tie keeps it); on a GPU every tiled group down to
// two steps below the largest at every K split that is not pointless (more slices than the device
// holds groups), summed in one launch and in two; Small and the warp kernel in each team where C is
// small enough for a 4x4 block per thread or team to make sense; Large, Wide and Wide16 where groups of 256
// fit and their 128x128 tiles, K split included, can fill half the device (BigTilesWorthTuning), and
// with K split (two launches) where the tiles make under two waves on the device.
namespace AutogradNet.Kernels;

public static partial class MatMulKernels
{
    /// <summary>Outputs above which Small and Warp are not candidates: a 4x4 block per thread or team leaves too little reuse.</summary>
    public const long TuneSmallMaxOutputs = 1 << 18;

    /// <summary>The choice Auto's rule makes for this shape on this host (the tuned table aside).</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static MatMulChoice RuleChoice(KernelHost host, int m, int n, int k)
    {
        var rule = host.WithoutTuning();
        var path = Choose(rule, m, n);
        int split = SplitK(rule, m, n, k);
        return path switch
        {
            MatMulPath.Tiled => new(path, rule.TiledGroup, split, split == 1 || SumsInSameLaunch(rule, TileGrid(rule.TiledGroup, m, n))),
            MatMulPath.Warp => new(path, rule.TiledGroup, WarpTeam: WarpTeam(rule, m, n, k)),
            _ => new(path, rule.TiledGroup),
        };
    }

    /// <summary>The choices autotuning times for this shape, the rule's first; each runs on this host (KernelHost.With).</summary>
    /// <param name="host">The kernel host.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">Shared dimension.</param>
    public static IReadOnlyList<MatMulChoice> Candidates(KernelHost host, int m, int n, int k)
    {
        var list = new List<MatMulChoice> { RuleChoice(host, m, n, k) };
        void Add(MatMulChoice c)
        {
            if (!list.Contains(c)) list.Add(c);
        }
        var neutral = host.DefaultTiledGroup;
        if (host.IsCpu) Add(new(MatMulPath.Host, neutral));
        if ((long)m * n <= TuneSmallMaxOutputs)
        {
            Add(new(MatMulPath.Small, neutral));
            int warps = host.GroupSize / host.Accelerator.WarpSize;
            if (host.GroupSize % host.Accelerator.WarpSize == 0)
                for (int team = 1; team <= warps && (team == 1 || warps <= MaxTeamWarps); team *= 2)
                    Add(new(MatMulPath.Warp, neutral, WarpTeam: team));
        }
        // Smaller groups only while the largest leaves the device short of groups.
        var first = TileGrid(neutral, m, n);
        int groups = (long)first.X * first.Y >= host.MaxGroups ? 1 : 3;
        foreach (var group in TiledGroups.SkipWhile(g => g != neutral).Take(groups))
        {
            var grid = TileGrid(group, m, n);
            long tiles = (long)grid.X * grid.Y;
            int last = 0;
            for (int ask = 1; ask <= 256; ask *= 2)
            {
                int split = SplitK(host.With(new(MatMulPath.Tiled, group, ask)), m, n, k);
                if (split == last) continue;
                if (split > 1 && tiles * split > 8L * host.MaxGroups) break;
                last = split;
                if (split == 1 || tiles <= KernelHost.MaxSplitKTiles) Add(new(MatMulPath.Tiled, group, split));
                if (split > 1) Add(new(MatMulPath.Tiled, group, split, SplitKInOneLaunch: false));
            }
        }
        long bigTiles = (long)((m + LargeTile - 1) / LargeTile) * ((n + LargeTile - 1) / LargeTile);
        int sms = host.Accelerator.NumMultiprocessors;
        if (host.CanUseLargeMatMul && BigTilesWorthTuning(bigTiles, k, sms))
        {
            // Where the 128x128 tiles make under two waves, also with K split (up to about four waves).
            foreach (var path in new[] { MatMulPath.Large, MatMulPath.Wide, MatMulPath.Wide16 })
            {
                Add(new(path, neutral));
                if (bigTiles >= 2L * sms) continue;
                int last = 1;
                for (int ask = 2; ask <= 8; ask *= 2)
                {
                    int split = SplitK(host.With(new(path, neutral, ask, false)), m, n, k);
                    if (split == last) continue;
                    if (bigTiles * split > 4L * sms || k / split < LargeTile) break;
                    last = split;
                    Add(new(path, neutral, split, false));
                }
            }
        }
        return list;
    }

    /// <summary>
    /// Whether Large, Wide and Wide16 are worth timing for a product of `bigTiles` 128x128 tiles and
    /// depth k on a device of `sms` multiprocessors: whether its tiles, with K split in up to 8 parts
    /// each at least 128 deep, give at least half the multiprocessors a group. On an H200 (run 10) every
    /// seed-sized product (1 to 8 tiles on 132 multiprocessors) ran 1.8-5x slower on its best 128-tile
    /// candidate than on its tuned kernel, and each candidate is a kernel to compile before the step's
    /// first run; 1024^3 (64 tiles, split 4) is where Wide16 won.
    /// </summary>
    /// <param name="bigTiles">128x128 tiles of C.</param>
    /// <param name="k">Shared dimension.</param>
    /// <param name="sms">Multiprocessors of the device.</param>
    internal static bool BigTilesWorthTuning(long bigTiles, int k, int sms) =>
        2 * bigTiles * Math.Clamp(k / LargeTile, 1, 8) >= sms;
}
