// Every kernel, each generic one with every op struct, compiled to PTX for SM_90 without a GPU: the
// CPU accelerator accepts code the PTX backend rejects, so this keeps CI honest about the GPU path.
using System.Reflection;
using AutogradNet.Kernels;
using FluentAssertions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Xunit;
using AutogradNet.Tests.Support;

namespace AutogradNet.Tests;

[CpuOnly]
public sealed class PtxCompileTests
{
    private static readonly Lazy<Context> Ctx = new(() => Context.Create(b => b.EnableAlgorithms()));
    private static readonly Lazy<PTXBackend> Backend = new(() => new PTXBackend(Ctx.Value,
        new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null));
    // Each kernel's PTX, compiled once: PtxCompileTests, SassTests and PersistentTests ask for the same
    // kernels (SassTests for all of them), and a compile is most of what each of those tests costs.
    // The context is never cleared: ILGPU's PTX for a kernel depends on what the context compiled
    // before (cleared before each compile, the Tile2x1 SGEMMs spill), so the tests keep one history.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<MethodInfo, Lazy<string>> Compiled = new();

    /// <summary>Every kernel method of Autograd.Kernels, generic ones closed over each op struct.</summary>
    public static TheoryData<string> Kernels()
    {
        var d = new TheoryData<string>();
        foreach (var m in AllKernels()) d.Add(Describe(m));
        return d;
    }

    internal static IEnumerable<MethodInfo> AllKernels()
    {
        var asm = typeof(KernelHost).Assembly;
        // Closed op structs; the combinators (UnaryThen, BinaryThen) are covered by the fused kernels of GraphTests.
        var unary = asm.GetTypes().Where(t => t.IsValueType && !t.IsGenericTypeDefinition && typeof(IUnaryOp).IsAssignableFrom(t)).ToArray();
        var binary = asm.GetTypes().Where(t => t.IsValueType && !t.IsGenericTypeDefinition && typeof(IBinaryOp).IsAssignableFrom(t)).ToArray();
        var shapes = asm.GetTypes().Where(t => t.IsValueType && typeof(ITileShape).IsAssignableFrom(t)).ToArray();
        // The cold-code probe's depths (Probes.Code.cs): each its own straight-line kernel.
        var depths = asm.GetTypes().Where(t => t.IsValueType && typeof(Probes.IDepth).IsAssignableFrom(t)).ToArray();
        // No tail; a plain sum (the sum of a product); the seed's loss and gradient; a chain of the
        // seed's shape (a stage with the loss, then a plain product).
        Type[] tails = [typeof(NoTail), typeof(SumTail<IdentityOp, FirstOp>), typeof(SumTail<PowOp, PowGradOp>),
            typeof(ChainTail<Stages<GroupProduct<AxpyOp, PowOp, PowGradOp>, Stages<GroupProduct<ClampGradOp, IdentityOp, FirstOp>, NoStage>>>)];
        // A row chain of the seed's shape: a product, a stage with the loss, a product masked by the first's output.
        Type[] rowStages = [typeof(NoStage),
            typeof(Stages<GroupProduct<FirstOp, IdentityOp, FirstOp>, Stages<GroupProduct<AxpyOp, PowOp, PowGradOp>, Stages<GroupProduct<ClampGradOp, IdentityOp, FirstOp>, NoStage>>>)];
        foreach (var type in asm.GetTypes())
        {
            foreach (var m in type.GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public))
            {
                if (!m.Name.EndsWith("Kernel", StringComparison.Ordinal) || m.ReturnType != typeof(void)) continue;
                if (!m.IsGenericMethodDefinition) { yield return m; continue; }
                // The persistent kernel's type argument is a recorded program: PersistentTests compiles real ones.
                if (m.GetGenericArguments().Any(t => t.GetGenericParameterConstraints().Contains(typeof(IPhase)))) continue;
                // Each struct in each generic slot, the other slots at their identity (IdentityOp, FirstOp,
                // the GPU's tile shape, NoTail).
                var slots = m.GetGenericArguments().Select(t => t.GetGenericParameterConstraints())
                    .Select<Type[], (Type[] Choices, Type Identity)>(c =>
                        c.Contains(typeof(IUnaryOp)) ? (unary, typeof(IdentityOp))
                        : c.Contains(typeof(ITileShape)) ? (shapes, typeof(Tile16x16))
                        : c.Contains(typeof(IProductTail)) ? (tails, typeof(NoTail))
                        : c.Contains(typeof(IGroupStage)) ? (rowStages, typeof(NoStage))
                        : c.Contains(typeof(Probes.IDepth)) ? (depths, typeof(Probes.Depth128))
                        : (binary, typeof(FirstOp))).ToArray();
                var choices = slots.Select(x => x.Choices).ToArray();
                var identity = slots.Select(x => x.Identity).ToArray();
                var seen = new HashSet<string>();
                for (int slot = 0; slot < choices.Length; slot++)
                    foreach (var op in choices[slot])
                    {
                        var args = (Type[])identity.Clone();
                        args[slot] = op;
                        if (seen.Add(string.Join(",", args.Select(Name)))) yield return m.MakeGenericMethod(args);
                    }
            }
        }
    }

    // The PTX of one kernel of AllKernels, named as Describe names it, with its launch bounds as a GPU
    // loads it, in PTX ISA 8.0 unless told (SassTests asks for the ISA its ptxas reads).
    internal static string PtxOf(string kernel, CudaInstructionSet? isa = null) => PtxOf(ByName.Value[kernel], isa);

    private static readonly Lazy<Dictionary<string, MethodInfo>> ByName = new(() => AllKernels().ToDictionary(Describe));

    // The PTX of a closed kernel method, with its launch bounds.
    // ILGPU writes the ISA into the header's .version line and nowhere else (PTXBackend), so a kernel is
    // compiled once, in 8.0, and its header rewritten for another ISA.
    internal static string PtxOf(MethodInfo method, CudaInstructionSet? isa = null)
    {
        string ptx = Compiled.GetOrAdd(method, m => new Lazy<string>(() =>
        {
            var entry = EntryPointDescription.FromExplicitlyGroupedKernel(m);
            lock (Backend) return ((PTXCompiledKernel)Backend.Value.Compile(entry, LaunchBoundsAttribute.Of(m))).PTXAssembly;
        })).Value;
        if (isa is not { } other || other == CudaInstructionSet.ISA_80) return ptx;
        string header = $".version {CudaInstructionSet.ISA_80}";
        ptx.Should().Contain(header, "the ISA is named once, in the header");
        return ptx.Replace(header, $".version {other}");
    }

    internal static string Describe(MethodInfo m) =>
        $"{m.DeclaringType!.Name}.{m.Name}" + (m.IsGenericMethod ? $"<{string.Join(", ", m.GetGenericArguments().Select(Name))}>" : "");

    // A type as C# spells it, generic arguments included: SumTail<PowOp, PowGradOp>.
    private static string Name(Type t) => t.IsGenericType
        ? $"{t.Name[..t.Name.IndexOf('`')]}<{string.Join(", ", t.GetGenericArguments().Select(Name))}>"
        : t.Name;

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_to_PTX_for_SM_90(string kernel)
    {
        var ptx = PtxOf(kernel);
        // AUTOGRAD_PTX_DUMP=dir keeps each kernel's PTX, to compare code before and after a change.
        if (Environment.GetEnvironmentVariable("AUTOGRAD_PTX_DUMP") is { Length: > 0 } dir)
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, string.Concat(kernel.Split(Path.GetInvalidFileNameChars())) + ".ptx"), ptx);
        }
        ptx.Should().Contain(".entry", kernel);
        ptx.Should().NotContain("tanh.approx", "tanh must not use the 2^-11 approximation");
        // Randn's double log and cos (ILGPU.Algorithms' XMath) pass values by reference through local
        // memory; it runs once per draw, not in a step. Every other kernel must keep its values in registers.
        if (kernel != "RandomKernels.RandnKernel")
            ptx.Should().NotContain(".local", "a kernel's values must stay in registers, not local memory");
    }

    [Fact]
    public void Every_op_struct_is_covered()
    {
        var names = AllKernels().Select(Describe).ToList();
        names.Should().Contain(n => n.Contains("MapKernel<TanhOp>"));
        names.Should().Contain(n => n.Contains("ZipBroadcastKernel<PowGradOp>"));
        names.Should().Contain(n => n.Contains("SumMapKernel<PowOp, FirstOp>")).And.Contain(n => n.Contains("SumMapKernel<IdentityOp, PowGradOp>"));
        names.Should().Contain(n => n.Contains("LargeKernel<ClampGradOp>"));
        names.Should().Contain("MatMulKernels.TiledKernel<Tile16x16, FirstOp, NoTail>").And.Contain("MatMulKernels.TiledKernel<Tile2x1, FirstOp, NoTail>");
        names.Should().Contain("MatMulKernels.TiledKernel<Tile16x16, FirstOp, SumTail<PowOp, PowGradOp>>")
            .And.Contain("MatMulKernels.WarpKernel<FirstOp, SumTail<IdentityOp, FirstOp>>");
        names.Should().Contain(n => n.StartsWith("MatMulKernels.RowsKernel<Stages<GroupProduct<FirstOp", StringComparison.Ordinal));
        names.Count.Should().BeGreaterThan(40);
    }

    // Each group shape is a constant in its kernel: the shared slices have the shape's size (plus
    // the split-K flag), so the sizes TiledGroupFor checks against the accelerator are the real ones.
    [Theory]
    [InlineData("Tile16x16", 16, 16)]
    [InlineData("Tile8x8", 8, 8)]
    [InlineData("Tile2x1", 2, 1)]
    [InlineData("Tile1x1", 1, 1)]
    public void Tiled_SGEMM_shares_slices_the_size_of_its_group(string shape, int x, int y)
    {
        var ptx = PtxOf($"MatMulKernels.TiledKernel<{shape}, FirstOp, NoTail>");
        ptx.Should().Contain("bar.sync").And.Contain("ld.shared.f32");
        var sizes = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]")
            .Select(mt => int.Parse(mt.Groups[1].Value)).ToList();
        sizes.Sum().Should().Be(MatMulKernels.TiledSharedBytes((x, y)), ptx.Split('\n').Where(l => l.Contains(".shared")).Aggregate("", (acc, l) => acc + l + "\n"));
    }

    [Fact]
    public void Paired_SGEMM_shares_one_set_of_slices()
    {
        var ptx = PtxOf("MatMulKernels.TiledPairKernel<Tile16x16, FirstOp, AddOp>");
        var sizes = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]")
            .Select(mt => int.Parse(mt.Groups[1].Value)).ToList();
        sizes.Sum().Should().Be(MatMulKernels.PairSharedBytes((16, 16)), "both halves load into the same slices");
    }

    [Fact]
    public void Warp_SGEMM_sums_its_lanes_by_shuffles_and_its_team_through_one_shared_array()
    {
        var ptx = PtxOf("MatMulKernels.WarpKernel<FirstOp, NoTail>");
        ptx.Should().Contain("shfl.sync.bfly").And.NotContain("shfl.sync.down", "a reduce-scatter by xor shuffles, not a shuffle-down tree per element");
        var sizes = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]")
            .Select(mt => int.Parse(mt.Groups[1].Value)).ToList();
        sizes.Should().Equal([sizeof(float) * 16 * MatMulKernels.MaxTeamWarps], "a 4x4 block per warp of the group, and nothing else");
        (ptx.Split("bar.sync").Length - 1).Should().Be(2, "a team hands its warps' blocks over, then frees the array for the next block");
        // A trip through K issues the loads of four k (4 of A and 4 of B each) before any multiply-add.
        int run = 0, longest = 0;
        foreach (var line in ptx.Split('\n').Select(l => l.Trim()))
        {
            if (line.StartsWith("ld.f32", StringComparison.Ordinal)) longest = Math.Max(longest, ++run);
            else if (System.Text.RegularExpressions.Regex.IsMatch(line, @"^(mul|fma|add)\.(rn\.)?f32")) run = 0;
        }
        longest.Should().Be(32, "32 loads in flight a trip");
    }

    // ptxas assembles every PTX div and rem as a division routine (it leaves strength reduction to
    // NVVM, which ILGPU does not have), even by 32 or 64. The warp kernel finds its warp, its team and
    // its rank by shifts and masks (warp size and team are powers of two); what is left is a block's
    // row and column, t / tilesN and t % tilesN, for each of a launch's two jobs. The tiled kernel
    // places its slices by masks (SassTests checks its SASS).
    [Theory]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, NoTail>", 4)]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, NoTail>", 0)]
    public void Product_kernels_divide_only_by_run_time_counts(string kernel, int most)
    {
        var ptx = PtxOf(kernel);
        var divisions = System.Text.RegularExpressions.Regex.Matches(ptx, @"\b(div|rem)\.[su]32\s+[^;]*;").Select(m => m.Value).ToList();
        divisions.Count.Should().BeLessThanOrEqualTo(most, $"{kernel}: {string.Join(" ", divisions)}");
        divisions.Should().NotContain(d => d.EndsWith(", 32;") || d.EndsWith(", 16;") || d.EndsWith(", 64;"), "a constant divisor is a shift or a mask");
    }

    // NoTail must cost nothing: the tail's barriers, atomic and shared tree appear only with a SumTail.
    [Fact]
    public void A_sum_tail_adds_its_count_and_tree_and_no_tail_adds_nothing()
    {
        var plain = PtxOf("MatMulKernels.SmallKernel<FirstOp, NoTail>");
        plain.Should().NotContain("bar.sync").And.NotContain("atom.").And.NotContain(".shared");
        var tail = PtxOf("MatMulKernels.SmallKernel<FirstOp, SumTail<PowOp, PowGradOp>>");
        tail.Should().Contain("bar.sync").And.Contain("atom.add").And.Contain("membar.gl");
        var sizes = System.Text.RegularExpressions.Regex.Matches(tail, @"\.shared \.align \d+ \.b8 \w+\[(\d+)\]")
            .Select(mt => int.Parse(mt.Groups[1].Value)).ToList();
        sizes.Sum().Should().Be(sizeof(int) + sizeof(float) * MatMulKernels.MaxTailThreads, "the last-group flag and the tree");
    }

    // The bounds that let ptxas keep a trip's loads in flight (LaunchBounds.cs) reach the PTX; kernels
    // without declared bounds get none.
    [Theory]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, NoTail>", true)]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, SumTail<PowOp, PowGradOp>>", true)]
    [InlineData("MatMulKernels.WarpPairKernel<AxpyOp, FirstOp>", true)]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, NoTail>", true)]
    [InlineData("MatMulKernels.TiledPairKernel<Tile16x16, FirstOp, FirstOp>", true)]
    [InlineData("MatMulKernels.WideKernel<FirstOp>", false)]
    public void Launch_bounds_reach_the_PTX(string kernel, bool bounded)
    {
        var ptx = PtxOf(kernel);
        if (bounded) ptx.Should().Contain(".maxntid 256, 1, 1").And.Contain(".minnctapersm 2");
        else ptx.Should().NotContain(".maxntid").And.NotContain(".minnctapersm");
    }

    [Fact]
    public void Wide_SGEMM_uses_16_byte_loads_and_an_unrolled_inner_loop()
    {
        var ptx = PtxOf("MatMulKernels.WideKernel<FirstOp>");
        int Count(string s) => ptx.Split(s).Length - 1;
        Count("ld.shared.v4.f32").Should().Be(32, "8 unrolled steps x 4 fragment loads");
        Count("ld.shared.f32").Should().Be(0, "no scalar shared loads in the inner loop");
        Count("ld.v4.f32").Should().BeGreaterThanOrEqualTo(2, "the slices' 16-byte global loads");
        Count("bar.sync").Should().Be(2, "one barrier before the loop and one per slice (double buffering)");
        // Each fragment load is the thread's base plus a constant (foldable into the load's offset): no
        // index is computed between the first and the last shared load of a slice.
        var lines = ptx.Split('\n');
        int first = Array.FindIndex(lines, l => l.Contains("ld.shared.v4.f32")), last = Array.FindLastIndex(lines, l => l.Contains("ld.shared.v4.f32"));
        lines[first..last].Count(l => l.Contains("add.s32") || l.Contains("mul.lo.s32")).Should().Be(0);
    }
}
