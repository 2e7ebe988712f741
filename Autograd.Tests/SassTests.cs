// Every kernel assembled for sm_90 (H100, H200) by NVIDIA's own PTX assembler, as the driver does when
// it loads our PTX, on a machine without a GPU. The PTX tests prove ILGPU emits PTX; these prove ptxas
// accepts it and say what the GPU would get: registers (so groups per multiprocessor), spills, and
// the SASS of the wide SGEMM's inner loop. ptxas comes from scripts/get-ptxas.sh (CI runs it);
// without it these tests skip and say how to get it.
using System.Diagnostics;
using System.Text.RegularExpressions;
using FluentAssertions;
using ILGPU.Runtime.Cuda;
using Xunit;
using AutogradNet.Tests.Support;

namespace AutogradNet.Tests;

[CpuOnly]
public sealed class SassTests
{
    // The ptxas of Debian's nvidia-cuda-toolkit 11.8 reads PTX ISA up to 7.8; the kernels' code is
    // the same in 7.8 as in 8.0 apart from the header.
    private static readonly CudaInstructionSet Isa = CudaInstructionSet.ISA_78;

    /// <summary>ptxas: AUTOGRAD_PTXAS, else .tools/cuda/ptxas above the test assembly, else on PATH.</summary>
    private static readonly Lazy<string?> Ptxas = new(() =>
    {
        if (Environment.GetEnvironmentVariable("AUTOGRAD_PTXAS") is { Length: > 0 } set) return File.Exists(set) ? set : null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, ".tools", "cuda", "ptxas");
            if (File.Exists(candidate)) return candidate;
        }
        return (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(p => Path.Combine(p, "ptxas")).FirstOrDefault(File.Exists);
    });

    private static string RequirePtxas()
    {
        Assert.SkipWhen(Ptxas.Value == null,
            "no ptxas on this machine: run scripts/get-ptxas.sh (Debian's nvidia-cuda-toolkit, no GPU needed) or set AUTOGRAD_PTXAS");
        return Ptxas.Value!;
    }

    private static (int ExitCode, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    // ptxas -v's report and the cubin's path; each kernel assembled once, as
    // several theories below ask for the same kernels.
    private static (string Report, string Cubin) Assemble(string kernel) =>
        Assembled.GetOrAdd(kernel, k => new Lazy<(string, string)>(() => Assemble(k, () => PtxCompileTests.PtxOf(k, Isa)))).Value;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<(string Report, string Cubin)>> Assembled = new();

    // ptxas is most of this class's time, and one kernel at a time it ran on one core. The first time
    // every kernel is asked for, each is compiled to PTX in AllKernels' order on this thread (ILGPU's
    // PTX for a kernel depends on what its context compiled before, so the order stays fixed) and
    // assembled on the other cores meanwhile; a kernel's failure stays in its Lazy for its own test.
    private static readonly Lazy<bool> AllAssembled = new(() =>
    {
        if (Ptxas.Value == null) return false;
        using var cores = new SemaphoreSlim(Environment.ProcessorCount);
        var running = new List<Task>();
        foreach (var kernel in PtxCompileTests.AllKernels().Select(PtxCompileTests.Describe))
        {
            try { PtxCompileTests.PtxOf(kernel, Isa); }
            catch (Exception) { continue; } // Assemble(kernel) meets it again in the kernel's test
            cores.Wait();
            running.Add(Task.Run(() =>
            {
                try { Assemble(kernel); }
                catch (Exception) { } // kept in its Lazy
                finally { cores.Release(); }
            }));
        }
        Task.WaitAll(running);
        return true;
    });

    // The run's PTX and cubins, in one folder that goes when the test process ends: a folder per
    // kernel, left behind, put some 260 folders in /tmp at every run.
    private static readonly Lazy<string> Scratch = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("autograd-sass-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { } // a file still open: the folder stays, as a temp folder may
            catch (UnauthorizedAccessException) { }
        };
        return dir;
    });

    private static int _files;

    private static (string Report, string Cubin) Assemble(string kernel, Func<string> makePtx)
    {
        var ptxas = RequirePtxas();
        int n = Interlocked.Increment(ref _files);
        var ptx = Path.Combine(Scratch.Value, $"k{n}.ptx");
        var cubin = Path.Combine(Scratch.Value, $"k{n}.cubin");
        File.WriteAllText(ptx, makePtx());
        var (code, output) = Run(ptxas, "-arch=sm_90", "-v", "-o", cubin, ptx);
        code.Should().Be(0, $"ptxas must accept {kernel}'s PTX:\n{output}");
        return (output, cubin);
    }

    private static int Registers(string report) =>
        int.Parse(Regex.Match(report, @"Used (\d+) registers").Groups[1].Value);

    // The persistent step kernel of the seed's program (PersistentTests.SeedProgramKernel): its
    // launch bounds (256 threads, 2 groups a multiprocessor) hold it to 128 registers, with no spills,
    // as the warp and tiled kernels it is made of.
    [Theory]
    [InlineData(AutogradNet.Kernels.MatMulPath.Warp)]
    [InlineData(AutogradNet.Kernels.MatMulPath.Tiled)]
    public void Persistent_seed_kernel_assembles_within_its_bounds(AutogradNet.Kernels.MatMulPath path)
    {
        RequirePtxas();
        var (report, _) = Assemble($"persistent seed kernel on {path}", () => PtxCompileTests.PtxOf(PersistentTests.SeedProgramKernel(path), Isa));
        Registers(report).Should().BeLessThanOrEqualTo(128, report);
        foreach (Match m in Regex.Matches(report, @"(\d+) bytes spill stores, (\d+) bytes spill loads"))
            (m.Groups[1].Value, m.Groups[2].Value).Should().Be(("0", "0"), report);
        // Its phases are calls (PhaseCall): registers carry their arguments, no stack frame.
        Regex.Matches(report, @"(\d+) bytes stack frame").Should().HaveCountGreaterThan(1, report)
            .And.AllSatisfy(m => m.Groups[1].Value.Should().Be("0", report));
    }

    // Every load before any store (MatMulKernels.Stores.cs): a thread reads the epilogue operand and the old C
    // of its whole block, then stores. Element by element, each load waited for the store before it
    // (C and the operand may be one buffer), 16 round trips in a row for a 4x4 block: the SASS read
    // LD, LD, ST sixteen times (H200 run 10: dH 6.5 us in the step against 3.6 without its operand).
    // Counted here: how often a store is followed by a load among the kernel's global accesses. Each
    // store path loads all it needs first, so the count is about the paths laid out one after another:
    // a block inside C (its operand along the rows, or fixed), a block at C's edge, and in the tiled
    // kernel the split-K fixup and the copies ptxas makes (2 for Small, 5 for the tiled kernel in
    // ptxas 11.8; element by element would be 16 a path). The warp kernel's lanes store an element
    // each (Warp_SGEMM_sums_by_a_reduce_scatter_and_stores_an_element_a_lane).
    [Theory]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, ClampGradOp, NoTail>", 5)]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, AxpyOp, NoTail>", 5)]
    [InlineData("MatMulKernels.SmallKernel<ClampGradOp, NoTail>", 2)]
    public void Epilogue_loads_come_before_its_stores(string kernel, int most)
    {
        static bool Load(string o) => o.StartsWith("LD.E", StringComparison.Ordinal) || o.StartsWith("LDG", StringComparison.Ordinal);
        static bool Store(string o) => o.StartsWith("ST.E", StringComparison.Ordinal) || o.StartsWith("STG", StringComparison.Ordinal);
        var ops = Sass(kernel).Where(o => Load(o) || Store(o)).ToList();
        ops.Count(Store).Should().BeGreaterThanOrEqualTo(16, $"{kernel} stores a block of 16");
        int storeThenLoad = Enumerable.Range(1, ops.Count - 1).Count(i => Store(ops[i - 1]) && Load(ops[i]));
        storeThenLoad.Should().BeLessThanOrEqualTo(most, $"{kernel}'s global accesses in order: {string.Join(" ", ops)}");
    }

    // The warp kernel sums its 4x4 block over a warp of 32 by a reduce-scatter (Block4x4.ScatterOverWarp):
    // 8 + 4 + 2 + 1 + 1 shuffles, unrolled (each lane mask an immediate), where a shuffle-down tree per
    // element ran 16 loops of 5 dependent shuffles (80, their latencies in a row; the loops' masks were
    // registers). The sums end spread over the lanes, so a lane stores one element: the kernel's global
    // stores are a single ST for each of a launch's two jobs, alone or in a team (3 in ptxas 11.8's
    // SASS; a lane storing a whole block took 16 a site).
    [Theory]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, NoTail>")]
    [InlineData("MatMulKernels.WarpKernel<ClampGradOp, NoTail>")]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, SumTail<PowOp, PowGradOp>>")]
    public void Warp_SGEMM_sums_by_a_reduce_scatter_and_stores_an_element_a_lane(string kernel)
    {
        var ins = SassInstructions(kernel);
        var shuffles = ins.Where(i => i.Op.StartsWith("SHFL.BFLY", StringComparison.Ordinal)).ToList();
        shuffles.Should().HaveCount(16, $"{kernel}: 8 + 4 + 2 + 1 + 1 shuffles for 16 sums over 32 lanes");
        shuffles.Should().OnlyContain(i => Regex.IsMatch(i.Operands, @"^PT, R\d+, R\d+, 0x[0-9a-f]+, 0x1f$"), "unrolled: each lane mask a constant");
        ins.Count(i => i.Op.StartsWith("SHFL.DOWN", StringComparison.Ordinal)).Should().Be(0);
        if (!kernel.Contains("SumTail", StringComparison.Ordinal))
            ins.Count(i => i.Op.StartsWith("ST.E", StringComparison.Ordinal) || i.Op.StartsWith("STG", StringComparison.Ordinal))
                .Should().BeLessThanOrEqualTo(4, $"{kernel}: a lane stores its one element (either job, alone or for its team)");
    }

    // A 4x4 block wholly inside C, its operand a matrix or a row (En = 1) or fixed along its rows
    // (En = 0), is stored from one view of each row at constant offsets (MatMulKernels.StoreBlockInside):
    // the 16 stores follow one another in the SASS, where through clamped run-time indices each element
    // took ~30 instructions between its stores (dH's kernel, TiledKernel<Tile16x16, ClampGradOp>: the
    // inside path ~210 instructions from the loop's end to its exit, the edge path ~450; 8x8 with no
    // operand ~110 against ~320).
    [Theory]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, ClampGradOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile8x8, FirstOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, AxpyOp, NoTail>")]
    [InlineData("MatMulKernels.SmallKernel<ClampGradOp, NoTail>")]
    [InlineData("MatMulKernels.TiledPairKernel<Tile16x16, AxpyOp, FirstOp>")]
    public void An_inside_block_is_stored_by_16_stores_in_a_row(string kernel)
    {
        int run = 0, longest = 0;
        foreach (var o in Sass(kernel))
        {
            if (o.StartsWith("ST.E", StringComparison.Ordinal) || o.StartsWith("STG", StringComparison.Ordinal)) longest = Math.Max(longest, ++run);
            else run = 0;
        }
        longest.Should().BeGreaterThanOrEqualTo(16, $"{kernel}: a block inside C stores its 16 elements one after another");
    }

    // ILGPU emits `x % 64` as rem.s32 even by a constant, and ptxas assembles a remainder as a
    // division (I2F.U32.RP and MUFU.RCP for the reciprocal, then IMAD.HI, IABS and fixes): the tiled
    // kernel placed every slice element in shared memory that way, 485 instructions before its first
    // barrier, half of them remainders, in groups bound by how many instructions they run (ncu, H200
    // run 12). The places are masks now (MatMulKernels.Mod): 251. (The pair kernel divides once a
    // group, by its run-time tile counts, to find its tile: a routine it needs.)
    [Theory]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, ClampGradOp, NoTail>")]
    public void Tiled_SGEMM_places_its_slices_without_a_division_routine(string kernel)
    {
        var ops = Sass(kernel);
        ops.Should().NotContain(o => o.StartsWith("MUFU.RCP", StringComparison.Ordinal) || o.StartsWith("I2F.U32.RP", StringComparison.Ordinal)
            || o == "IABS", $"{kernel}: a remainder or division assembled as a routine ({ops.Count} instructions)");
    }

    // The tiled kernel read each operand's layout from its run-time strides at every element, so ptxas
    // computed both places of each slice element (along k and along the tile's side) and selected one:
    // 17 SELs and 40 predicated MOVs before the 16x16 kernel's first barrier, 33 and 80 in the 8x8 one
    // (which moves twice the elements a thread). A thread's share is now a walk found once
    // (MatMulKernels.SliceSide: its selects are the same few whatever the group), each element an add
    // of a step: 423 -> 324 instructions before the 8x8 kernel's first barrier, 244 -> 193 in the 16x16.
    [Theory]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, ClampGradOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile8x8, FirstOp, NoTail>")]
    public void Tiled_SGEMM_places_its_slices_without_selecting_a_layout_per_element(string kernel)
    {
        var ops = Sass(kernel);
        var setup = ops[..ops.IndexOf("BAR.SYNC")];
        setup.Count(o => o == "SEL").Should().BeLessThanOrEqualTo(10, $"{kernel}: {setup.Count} instructions before the first barrier");
    }

    [Theory]
    [MemberData(nameof(PtxCompileTests.Kernels), MemberType = typeof(PtxCompileTests))]
    public void Kernel_assembles_for_sm_90_without_spilling(string kernel)
    {
        _ = AllAssembled.Value;
        var (report, _) = Assemble(kernel);
        Regex.IsMatch(report, @"Used \d+ registers").Should().BeTrue(report);
        foreach (Match m in Regex.Matches(report, @"(\d+) bytes spill stores, (\d+) bytes spill loads"))
            (m.Groups[1].Value, m.Groups[2].Value).Should().Be(("0", "0"), $"{kernel} must keep its values in registers:\n{report}");
        // Randn's double log and cos (ILGPU.Algorithms) are calls with a stack frame; it runs once
        // per draw, not in a step. Every other kernel is one function with no frame.
        if (kernel != "RandomKernels.RandnKernel")
            Regex.Matches(report, @"(\d+) bytes stack frame").Should().AllSatisfy(m => m.Groups[1].Value.Should().Be("0", report));
    }

    // An SM holds 64K registers, allocated in steps of 8 a thread: a group of 256 threads at up to 128
    // registers leaves room for a second group, whose warps hide the first one's slice loads. At 129 the
    // SM would hold one group (8 warps) and the 128x128 kernels would stall on every slice.
    [Theory]
    [InlineData("MatMulKernels.WideKernel<FirstOp>")]
    [InlineData("MatMulKernels.WideKernel<ClampGradOp>")]
    [InlineData("MatMulKernels.WideKernel<AxpyOp>")]
    [InlineData("MatMulKernels.Wide16Kernel<FirstOp>")]
    [InlineData("MatMulKernels.Wide16Kernel<AxpyOp>")]
    [InlineData("MatMulKernels.Wide16WholeKernel<FirstOp>")]
    [InlineData("MatMulKernels.Wide16WholeKernel<AxpyOp>")]
    [InlineData("MatMulKernels.Wide16AsyncKernel<FirstOp>")]
    [InlineData("MatMulKernels.Wide16AsyncKernel<AxpyOp>")]
    [InlineData("MatMulKernels.LargeKernel<FirstOp>")]
    [InlineData("MatMulKernels.LargeKernel<DivOp>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, SumTail<PowOp, PowGradOp>>")]
    [InlineData("MatMulKernels.TiledPairKernel<Tile16x16, FirstOp, PowGradOp>")]
    [InlineData("MatMulKernels.WarpKernel<PowGradOp, NoTail>")]
    [InlineData("MatMulKernels.WarpPairKernel<FirstOp, PowGradOp>")]
    public void SGEMM_groups_of_256_fit_two_to_a_multiprocessor(string kernel)
    {
        var (report, _) = Assemble(kernel);
        Registers(report).Should().BeLessThanOrEqualTo(128, $"{kernel}: two groups of 256 threads per SM need at most 128 registers a thread");
    }

    // The warp kernel's trip issues the loads of four k (4 of A and 4 of B each) before any multiply-add,
    // so a trip waits on memory once; the tiled kernel's split-K fixup walks a tile's slices two at a
    // time, 32 loads before its adds (the PTX tests assert both of the PTX). Without launch bounds
    // ptxas fits each in 64 registers by splitting the 32 loads into several waits (LaunchBounds.cs):
    // the SASS, not the PTX, is what the GPU runs.
    [Theory]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, NoTail>")]
    [InlineData("MatMulKernels.WarpKernel<ClampGradOp, NoTail>")]
    [InlineData("MatMulKernels.WarpKernel<FirstOp, SumTail<PowOp, PowGradOp>>")]
    [InlineData("MatMulKernels.WarpPairKernel<AxpyOp, FirstOp>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, AxpyOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, SumTail<PowOp, PowGradOp>>")]
    [InlineData("MatMulKernels.TiledKernel<Tile8x8, FirstOp, NoTail>")]
    [InlineData("MatMulKernels.SmallKernel<FirstOp, NoTail>")]
    [InlineData("MatMulKernels.SmallKernel<FirstOp, SumTail<PowOp, PowGradOp>>")]
    [InlineData("MatMulKernels.TiledPairKernel<Tile16x16, AxpyOp, FirstOp>")]
    public void SGEMM_keeps_32_loads_in_flight_in_SASS(string kernel) =>
        LongestLoadRun(kernel).Should().BeGreaterThanOrEqualTo(32, $"{kernel}: the 32 loads of a trip are issued before its first multiply-add");

    // The sums' grid-stride loops load four elements before adding them in order: one at a time,
    // ptxas leaves a thread one load in flight, and a sum of 256M floats then waits on memory once per
    // element a thread.
    [Theory]
    [InlineData("Reduce.SumRowsKernel")]
    [InlineData("Reduce.SumMapKernel<IdentityOp, FirstOp>")]
    [InlineData("Reduce.SumMapKernel<PowOp, FirstOp>")]
    [InlineData("Reduce.SumMapKernel<IdentityOp, PowGradOp>")]
    [InlineData("Reduce.SumMiddleKernel")]
    [InlineData("Reduce.SumMiddleChunksKernel")]
    public void Sums_keep_4_loads_in_flight_in_SASS(string kernel) =>
        LongestLoadRun(kernel).Should().BeGreaterThanOrEqualTo(4, $"{kernel}: four loads before their adds");

    // A tiled slice's loads go to registers before any is stored to shared memory: a loop of load
    // then store waited on memory once per element (ptxas cannot hoist a generic load above a shared
    // store), ~3 µs a 16-deep slice on the H200 (run 7: 201 µs for h = x w1's 63 slices). And the next
    // slice's loads issue while this one is multiplied: the code between the barriers that hold a
    // slice's multiply-adds also issues the 8 loads of a 16x16 group's next slice (4 of A, 4 of B; the
    // first of an 8x8 group's two batches), most of them in its first half, so their wait hides
    // behind the multiply-adds (ptxas places them; it sank them to the end while the fetch was
    // conditional). The multiply-adds read shared memory at constant offsets: no address arithmetic
    // per read. Large (one slice at a time, no prefetch) stores a slice after its 8 loads.
    [Theory]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, AxpyOp, NoTail>")]
    [InlineData("MatMulKernels.TiledKernel<Tile16x16, FirstOp, SumTail<PowOp, PowGradOp>>")]
    [InlineData("MatMulKernels.TiledKernel<Tile8x8, FirstOp, NoTail>")]
    [InlineData("MatMulKernels.TiledPairKernel<Tile16x16, AxpyOp, FirstOp>")]
    public void Tiled_SGEMM_fetches_the_next_slice_while_it_multiplies(string kernel)
    {
        var ops = Sass(kernel);
        // A slice's multiply: from a barrier to the next, with its 256 multiply-adds a thread.
        int slices = 0;
        for (int i = 0; i < ops.Count; i++)
        {
            if (!ops[i].StartsWith("BAR.SYNC", StringComparison.Ordinal)) continue;
            int end = ops.FindIndex(i + 1, o => o.StartsWith("BAR", StringComparison.Ordinal));
            var segment = ops[(i + 1)..(end < 0 ? ops.Count : end)];
            if (segment.Count(o => o == "FFMA") < 128) continue;
            slices++;
            var loads = Enumerable.Range(0, segment.Count).Where(j => IsGlobalLoad(segment[j])).ToList();
            loads.Should().HaveCountGreaterThanOrEqualTo(8, $"{kernel}: the next slice's loads issue among this slice's multiply-adds");
            loads.Count(j => j < segment.Count / 2).Should().BeGreaterThanOrEqualTo(4, $"{kernel}: most of them early, to hide their wait");
            segment.Count(o => o.StartsWith("LEA", StringComparison.Ordinal) || o.StartsWith("IADD", StringComparison.Ordinal))
                .Should().BeLessThan(32, $"{kernel}: the shared reads are constant offsets, not computed one by one");
        }
        slices.Should().BeGreaterThan(0, $"{kernel} multiplies a whole 16-deep slice between two barriers");
    }

    [Fact]
    public void Large_SGEMM_loads_a_slice_before_storing_it() =>
        LongestLoadRun("MatMulKernels.LargeKernel<FirstOp>", sharedStoresBreak: true).Should().BeGreaterThanOrEqualTo(8, "Large's 8 loads a slice issue before its shared stores");

    private static bool IsGlobalLoad(string op) => op.StartsWith("LD.", StringComparison.Ordinal) || op.StartsWith("LDG.", StringComparison.Ordinal);

    // The longest run of global loads with no floating-point instruction between them (nor a shared
    // store, where asked).
    private static int LongestLoadRun(string kernel, bool sharedStoresBreak = false)
    {
        int run = 0, longest = 0;
        foreach (var o in Sass(kernel))
        {
            if (IsGlobalLoad(o)) longest = Math.Max(longest, ++run);
            else if (o.StartsWith("FFMA", StringComparison.Ordinal) || o.StartsWith("FMUL", StringComparison.Ordinal) || o.StartsWith("FADD", StringComparison.Ordinal)
                || (sharedStoresBreak && o.StartsWith("STS", StringComparison.Ordinal))) run = 0;
        }
        return longest;
    }

    // The SASS of one kernel as opcodes: "/*25b0*/  @!P0 LDS.128 R56, [R83] ;" -> "LDS.128".
    private static List<string> Sass(string kernel) => SassInstructions(kernel).Select(i => i.Op).ToList();

    /// <summary>The SASS of one kernel as opcodes (skips without ptxas and cuobjdump): for other classes' checks of one kernel.</summary>
    internal static List<string> Opcodes(string kernel) => Sass(kernel);

    // The SASS of one kernel as opcodes and operands: "/*25b0*/  @!P0 LDS.128 R56, [R83] ;" -> ("LDS.128", "R56, [R83]").
    private static List<(string Op, string Operands)> SassInstructions(string kernel)
    {
        var (_, cubin) = Assemble(kernel);
        var cuobjdump = Path.Combine(Path.GetDirectoryName(Ptxas.Value!)!, "cuobjdump");
        Assert.SkipUnless(File.Exists(cuobjdump), "no cuobjdump beside ptxas: run scripts/get-ptxas.sh");
        var (code, sass) = Run(cuobjdump, "-sass", cubin);
        code.Should().Be(0, sass);
        return Regex.Matches(sass, @"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)\s*([^;]*);")
            .Select(m => (m.Groups[1].Value, m.Groups[2].Value.Trim())).ToList();
    }

    // What the PTX test asserts of Wide's inner loop (16-byte loads, constant offsets) must survive
    // ptxas: from the slice's first shared load to its last, nothing but LDS.128 and FFMA, so the
    // FMA units are fed and no index arithmetic sits between the loads.
    [Fact]
    public void Wide_SGEMM_inner_loop_in_SASS_is_only_16_byte_shared_loads_and_FMAs()
    {
        var ops = Sass("MatMulKernels.WideKernel<FirstOp>");
        ops.Count(o => o == "LDS.128").Should().Be(32, "8 unrolled steps x 4 fragment loads");
        ops.Count(o => o.StartsWith("LDS", StringComparison.Ordinal) && o != "LDS.128").Should().Be(0, "no narrower shared loads");
        int first = ops.IndexOf("LDS.128"), last = ops.LastIndexOf("LDS.128");
        var between = ops[first..(last + 1)];
        between.Where(o => o != "LDS.128" && o != "FFMA").Should().BeEmpty("the unrolled slice is loads and multiply-adds only");
        between.Count(o => o == "FFMA").Should().BeGreaterThan(384, "most of the slice's 512 FMAs are issued between its loads");
        ops.Count(o => o == "FFMA").Should().BeGreaterThanOrEqualTo(512, "8 steps x 8x8 per thread");
    }

    // Wide16Whole exists to take the edge tests out of Wide16's slice loop (the layout, bounds and
    // alignment tests of each half-slice's fetch and store; ptxas 11.8 gave Wide16 562 instructions
    // beside its FFMA and LDS between the prologue's barrier and the loop's, Wide16Whole 85). The
    // loop is what lies between the two barriers: 1,024 FFMA and 64 LDS.128 in both.
    [Fact]
    public void Wide16Whole_slice_loop_in_SASS_has_few_instructions_beside_its_FMAs()
    {
        static (int Ffma, int Lds, int Other) Loop(string kernel)
        {
            var ops = Sass(kernel);
            int first = ops.IndexOf("BAR.SYNC"), last = ops.LastIndexOf("BAR.SYNC");
            first.Should().BeLessThan(last, $"{kernel}: a barrier after the prologue and one ending the loop");
            var loop = ops[(first + 1)..last];
            if (kernel.Contains("Whole", StringComparison.Ordinal))
                (loop.Count(o => o == "LD.E.128"), loop.Count(o => (o.StartsWith("LD.", StringComparison.Ordinal) || o.StartsWith("LDG", StringComparison.Ordinal)) && o != "LD.E.128"))
                    .Should().Be((4, 0), $"{kernel}: the next slice as two 16-byte loads a half, A and B, no scalar loads");
            return (loop.Count(o => o == "FFMA"), loop.Count(o => o == "LDS.128"), loop.Count(o => o is not ("FFMA" or "LDS.128")));
        }
        var whole = Loop("MatMulKernels.Wide16WholeKernel<FirstOp>");
        var edged = Loop("MatMulKernels.Wide16Kernel<FirstOp>");
        (whole.Ffma, whole.Lds).Should().Be((1024, 64), "16 steps of 64 FMAs and 4 fragment loads");
        (edged.Ffma, edged.Lds).Should().Be((1024, 64));
        whole.Other.Should().BeLessThanOrEqualTo(120, "the fetch is an add and a load, the store one to four stores");
        whole.Other.Should().BeLessThan(edged.Other / 4, "the edge tests are gone from the loop");
    }

    // Wide16Whole asks for step k + 1's fragments before step k's FMAs, so a shared load has about a
    // step of instructions to arrive in before the first that reads it (a shared load takes ~30
    // clocks). Asked for in the step that reads them, ptxas placed all but 13 of 64 fewer than 24
    // instructions ahead in this lean loop (Wide16's own loop: 45). The slice's first set and a few
    // ptxas places late are exempt: three in four must be at least 24 instructions ahead.
    [Fact]
    public void Wide16Whole_asks_for_its_fragments_a_step_ahead()
    {
        var ins = SassInstructions("MatMulKernels.Wide16WholeKernel<FirstOp>");
        int first = ins.FindIndex(i => i.Op == "BAR.SYNC"), last = ins.FindLastIndex(i => i.Op == "BAR.SYNC");
        var ahead = FragmentLoadLeads(ins[(first + 1)..last]);
        ahead.Should().HaveCount(64, "16 steps of 4 fragment loads");
        ahead.Count(d => d >= 24).Should().BeGreaterThanOrEqualTo(48, $"fragments asked for a step ahead (distances {string.Join(", ", ahead.Order())})");
    }

    // For each LDS.128 of a loop, how many instructions later its four registers are first read.
    private static List<int> FragmentLoadLeads(List<(string Op, string Operands)> loop)
    {
        var ahead = new List<int>();
        for (int i = 0; i < loop.Count; i++)
        {
            if (loop[i].Op != "LDS.128") continue;
            int r = int.Parse(Regex.Match(loop[i].Operands, @"^R(\d+)").Groups[1].Value);
            var dest = Enumerable.Range(r, 4).Select(x => new Regex($@"\bR{x}\b")).ToArray();
            // The first later instruction that reads one of the four registers (its operands after the destination).
            int use = loop.FindIndex(i + 1, l => l.Operands.IndexOf(',') is >= 0 and var c && dest.Any(d => d.IsMatch(l.Operands[(c + 1)..])));
            ahead.Add(use < 0 ? int.MaxValue : use - i);
        }
        return ahead;
    }

    // Wide16Async copies its slices with cp.async: in the SASS, LDGSTS (global to shared, no register)
    // and no global load in the slice loop; the loop waits for one group of copies (DEPBAR.LE SB0, 0x1:
    // the slice it is about to multiply, the next still in flight) before its one barrier, holds
    // Wide16Whole's 1,024 FFMA and 64 LDS.128 with little beside them (ptxas 11.8: 75), and asks for
    // its fragments a step ahead as Wide16Whole does.
    [Fact]
    public void Wide16Async_copies_slices_with_LDGSTS_and_waits_for_one_group_a_slice()
    {
        const string kernel = "MatMulKernels.Wide16AsyncKernel<FirstOp>";
        var ptx = PtxCompileTests.PtxOf(kernel);
        ptx.Should().Contain("cp.async.cg.shared.global").And.Contain("cp.async.ca.shared.global").And.Contain("cp.async.wait_group 1;")
            .And.Contain("cp.async.commit_group;").And.Contain(".extern .shared .align 16 .b8 __dyn_shared_alloca[]");
        var ins = SassInstructions(kernel);
        var ops = ins.Select(i => i.Op).ToList();
        ops.Count(o => o == "BAR.SYNC").Should().Be(1, "one barrier a slice, none in the prologue");
        int wait = ins.FindIndex(i => i.Op == "DEPBAR.LE");
        wait.Should().BeGreaterThan(0);
        ins[wait].Operands.Replace(" ", "").Should().Be("SB0,0x1", "the loop waits until one group of copies is left in flight");
        int barrier = ops.IndexOf("BAR.SYNC");
        barrier.Should().BeGreaterThan(wait, "then meets the group");
        ops[wait..barrier].Should().NotContain(o => o.StartsWith("LDS", StringComparison.Ordinal), "before it reads the slice");
        int lastLds = ops.LastIndexOf("LDS.128");
        int end = ops.FindIndex(lastLds, o => o == "BRA");
        var loop = ops[wait..end];
        (loop.Count(o => o == "FFMA"), loop.Count(o => o == "LDS.128")).Should().Be((1024, 64), "16 steps of 64 FMAs and 4 fragment loads");
        loop.Count(o => o.StartsWith("LDGSTS", StringComparison.Ordinal)).Should().BeGreaterThanOrEqualTo(4, "the slice two ahead, copied while this one is multiplied");
        loop.Should().NotContain(o => IsGlobalLoad(o), "no slice passes through registers");
        loop.Count(o => o is not ("FFMA" or "LDS.128")).Should().BeLessThanOrEqualTo(100, "beside the FMAs, the copies' addresses and the ring's bookkeeping");
        ops.Count(o => o.StartsWith("LDGSTS.E.BYPASS.128", StringComparison.Ordinal)).Should().BeGreaterThanOrEqualTo(4, "operands along m: one 16-byte copy a half-slice");
        // The copies sit in the middle of the slice's steps: issued at its top, ptxas 11.8 asked for
        // each step's fragments at the step (2 of 64 a step ahead; in the middle 61).
        var ahead = FragmentLoadLeads(ins[wait..end]);
        ahead.Count(d => d >= 24).Should().BeGreaterThanOrEqualTo(48, $"fragments asked for a step ahead (distances {string.Join(", ", ahead.Order())})");
    }
}
