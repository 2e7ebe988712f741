// The compiled step's fusion: the generated kernels (each compiles to PTX), the seed's four nodes, and
// fusion changing no result (GraphTests.cs has the rest).
using AutogradNet.Kernels;
using AutogradNet.Optim;
using AutogradNet.Tests.Support;
using FluentAssertions;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using Xunit;

namespace AutogradNet.Tests;

public sealed partial class GraphTests
{
    [Fact]
    public void Fused_kernels_are_generated_and_compile_to_PTX()
    {
        var x = TestData.Tensor([7, 33], 1);
        var w = TestData.Tensor([33, 5], 2, requiresGrad: true);
        var b = TestData.Tensor([5], 3, requiresGrad: true);
        using var opt = new Sgd([w, b], 0.01f);
        // (xw + b) -> tanh -> *2 -> exp: a binary op followed by a unary chain, and more in the backward.
        using var step = Graph.Compile(() => ((x.MatMul(w) + b).Tanh() * 2f).Exp().Sum(), opt);
        step.FusedKernels.Should().BeGreaterThan(0);
        var generated = step.GeneratedOps.ToList();
        generated.Should().Contain(g => g.Family == "MatMul" && g.Ops[0].Name.StartsWith("BinaryThen", StringComparison.Ordinal),
            "(xw + b) -> tanh -> *2 -> exp goes into the product's epilogue");
        // A loss over a product that nothing else reads: the sum (map, scale, gradient) is the product's tail.
        var y = TestData.Tensor([7, 5], 4);
        using var opt2 = new Sgd([w], 0.01f);
        using var lossStep = Graph.Compile(() => (y - x.MatMul(w)).Pow(2).Mean(), opt2);
        var withSum = lossStep.GeneratedOps.Where(g => g.Family == "MatMulSum").ToList();
        withSum.Should().ContainSingle().Which.Ops.Select(o => o.Name).Should().Equal("Flip`1", "PowOp", "PowGradOp");
        generated.AddRange(withSum);
        // The seed's two SGD updates: a pair of products with their epilogues.
        var (sx, sy, sw1, sw2) = TestData.SeedNet(3);
        using var opt3 = new Sgd([sw1, sw2], 1e-6f);
        using var seedStep = Graph.Compile(() => (sx.MatMul(sw1).Clamp(min: 0).MatMul(sw2) - sy).Pow(2).Sum(), opt3);
        var pairs = seedStep.GeneratedOps.Where(g => g.Family == "MatMulPair").ToList();
        pairs.Should().ContainSingle();
        generated.AddRange(pairs);
        // The seed's chain (KernelHost.ChainTails, on a kernel that takes a tail): h's product, then y
        // with its loss and dH in its last group.
        using (new MatMulPin(TestData.Device.Host, MatMulPath.Small))
        using (new KernelTests.ChainsOn(TestData.Device.Host, true))
        {
            using var opt4 = new Sgd([sw1, sw2], 1e-6f);
            using var chainStep = Graph.Compile(() => (sx.MatMul(sw1).Clamp(min: 0).MatMul(sw2) - sy).Pow(2).Sum(), opt4);
            var chains = chainStep.GeneratedOps.Where(g => g.Family == "MatMulChain").ToList();
            chains.Should().ContainSingle().Which.Ops[1].Name.Should().Be("ChainTail`1");
            generated.AddRange(chains);
        }
        // The seed's row chain (KernelHost.RowChains): y with its loss, then dH, block of rows by block
        // (h too: a block of 4 of its rows is 400,000 multiply-adds, within a group's share).
        using (new MatMulPin(TestData.Device.Host, MatMulPath.Small))
        using (new KernelTests.RowsOn(TestData.Device.Host, true))
        {
            using var opt5 = new Sgd([sw1, sw2], 1e-6f);
            using var rowStep = Graph.Compile(() => (sx.MatMul(sw1).Clamp(min: 0).MatMul(sw2) - sy).Pow(2).Sum(), opt5);
            var rows = rowStep.GeneratedOps.Where(g => g.Family == "MatMulRows").ToList();
            rows.Should().ContainSingle().Which.Ops[0].Name.Should().Be("Stages`2");
            generated.AddRange(rows);
        }
        using var ctx = Context.Create(c => c.EnableAlgorithms());
        var be = new PTXBackend(ctx, new ILGPU.Runtime.Cuda.CudaCapabilityContext(ILGPU.Runtime.Cuda.CudaArchitecture.SM_90),
            ILGPU.Runtime.Cuda.CudaArchitecture.SM_90, ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_80, null);
        foreach (var (family, ops) in generated)
            foreach (var m in GeneratedKernels(family, ops))
            {
                var ptx = ((PTXCompiledKernel)be.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(m), KernelSpecialization.Empty)).PTXAssembly;
                ptx.Should().Contain(".entry", $"{m.Name}<{string.Join(", ", ops.Select(o => o.Name))}>");
                if (family is "MatMulChain" or "MatMulRows") ptx.Should().NotContain(".local", $"{m.Name}: the chain's blocks stay in registers");
            }
        // And the fused step still trains like eager.
        var l0 = step.Run().Item();
        for (int i = 0; i < 5; i++) step.Run();
        step.Run().Item().Should().BeLessThan(l0);
    }

    // The kernel methods a generated op struct closes: every SGEMM path for an epilogue.
    private static IEnumerable<System.Reflection.MethodInfo> GeneratedKernels(string family, Type[] ops)
    {
        const System.Reflection.BindingFlags flags = System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static;
        var names = family switch
        {
            "Map" => [(typeof(Elementwise), "MapKernel")],
            "Zip" => [(typeof(Elementwise), "ZipKernel")],
            "MatMulPair" => [(typeof(MatMulKernels), "TiledPairKernel")],
            "MatMulRows" => [(typeof(MatMulKernels), "RowsKernel")],
            "MatMulChain" => new[] { "SmallKernel", "TiledKernel", "WarpKernel", "SplitKSumKernel" }.Select(n => (typeof(MatMulKernels), n)).ToArray(),
            "MatMul" or "MatMulSum" => new[] { "SmallKernel", "TiledKernel", "WarpKernel", "LargeKernel", "SplitKSumKernel" }.Select(n => (typeof(MatMulKernels), n)).ToArray(),
            _ => new[] { (typeof(Reduce), "SumMapKernel") },
        };
        // A MatMulSum's sum runs as a tail of the kernels that take one, else as SumMapKernel after the product.
        Type tail = family == "MatMulSum" ? typeof(SumTail<,>).MakeGenericType(ops[1], ops[2]) : family == "MatMulChain" ? ops[1] : typeof(NoTail);
        foreach (var (type, name) in names)
        {
            var m = type.GetMethod(name, flags)!;
            yield return type != typeof(MatMulKernels) ? m.MakeGenericMethod(ops)
                : name == "TiledPairKernel" ? m.MakeGenericMethod([typeof(Tile16x16), .. ops])
                : name == "RowsKernel" ? m.MakeGenericMethod(ops)
                : name == "LargeKernel" ? m.MakeGenericMethod(ops[0])
                : m.MakeGenericMethod(name == "TiledKernel" ? [typeof(Tile16x16), ops[0], tail] : [ops[0], tail]);
        }
        if (family == "MatMulSum") yield return typeof(Reduce).GetMethod("SumMapKernel", flags)!.MakeGenericMethod(ops[1], ops[2]);
    }

    [Fact]
    public void Seed_step_fuses_into_four_nodes()
    {
        // The structure the rule gives; on a GPU, autotuning may choose kernels that do not pair.
        using var rule = MatMulPin.Rule(TestData.Device.Host);
        var (x, y, w1, w2) = TestData.SeedNet(5);
        using var opt = new Sgd([w1, w2], 1e-6f);
        using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt);
        step.Run();
        string text = step.Describe();
        text.Should().Contain("MatMul(NN) -> Clamp(0, Infinity)", "relu in the forward product's epilogue")
            .And.Contain("MatMul(NN) -> Add(alpha=-1) with [64, 10]", "y subtracted in the second product's epilogue")
            .And.Contain("Add(alpha=-1) with [64, 10] -> Pow(2) -> Sum, with PowGrad(2)", "loss and its gradient in the second product's launch")
            .And.Contain("ClampGrad(0, Infinity) (flipped) with [64, 100]", "the relu mask in the backward product's epilogue")
            .And.Contain("MatMul(TN) -> SGD update of [1000, 100]").And.Contain("MatMul(TN) -> SGD update of [100, 10]");
        // On a GPU four of the five products split K, and sum their slices in the same launch; the
        // loss is summed in its product's launch (on the CPU accelerator, by the host SGEMM's code);
        // the two updates are one node, one launch on a GPU, two host products on the CPU accelerator.
        text.Should().Contain(TestData.OnGpu ? "sum in the same launch]" : "sum on the host]")
            .And.Contain("Paired: Fused(MatMul(TN) -> SGD update of [1000, 100])")
            .And.Contain(TestData.OnGpu ? "in one launch" : "one after the other");
        step.Nodes.Should().Be(4, text);
        step.LaunchesPerStep.Should().Be(TestData.OnGpu ? 4 : 5, text);
    }

    [Fact]
    public void A_mean_loss_fuses_as_well_as_a_sum()
    {
        // Mean = Sum then Scale: the scale goes into the loss pass, and the backward's seed scaled by
        // 1/n is folded at compile time, so the gradient still comes out of the same pass.
        var (x, y, w1, w2) = TestData.SeedNet(27);
        Tensor[] start = [w1, w2];
        var (eager, compiled) = Train(start, p => (x.MatMul(p[0]).Clamp(min: 0).MatMul(p[1]) - y).Pow(2).Mean(), "sgd", 1e-4f, 20);
        ShouldAgree(eager, compiled, "seed with Mean");
        using var rule = MatMulPin.Rule(TestData.Device.Host);
        var pc = Copy(start);
        using var opt = new Sgd(pc, 1e-4f);
        using var step = Graph.Compile(() => (x.MatMul(pc[0]).Clamp(min: 0).MatMul(pc[1]) - y).Pow(2).Mean(), opt);
        step.Run();
        step.Describe().Should().Contain("Pow(2) -> Sum -> Scale(0.0015625), with PowGrad(2)");
        step.LaunchesPerStep.Should().Be(TestData.OnGpu ? 4 : 5, step.Describe());
    }

    [Fact]
    public void Fusion_changes_no_result()
    {
        float[] Losses(bool fuse)
        {
            var (x, y, w1, w2) = TestData.SeedNet(9);
            using var opt = new Sgd([w1, w2], 1e-6f);
            using var step = TestData.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), opt, fuse);
            (step.Nodes > 4).Should().Be(!fuse, "fused: four nodes (the reshape of the gradient seed is folded at compile time)");
            return step.Run(steps: 20).ToArray();
        }
        var fused = Losses(true);
        var plain = Losses(false);
        if (!TestData.OnGpu)
        {
            // Same arithmetic in the same order: bit for bit on the CPU accelerator.
            fused.Should().Equal(plain);
            return;
        }
        // ptxas contracts a * b + c into an FMA differently per kernel: the last bits may differ.
        ShouldMatchEachStep(plain, fused, "unfused vs fused");
    }
}
