// The seed (../../shared/seed/two_layer_net.py, PyTorch's "Tensors and autograd" two-layer net),
// line for line in C#. By default the step is compiled once into a static graph and replayed
// (Graph.Compile); --eager runs the PyTorch-style loop instead.
// Options: --steps N, --device cpu|cuda|opencl, --sizes N,D_in,H,D_out, --seed S, --eager.
using System.Diagnostics;
using AutogradNet;
using AutogradNet.Optim;

var options = Options.Parse(args);
if (options.Device != null) Device.Default = Device.Get(options.Device);
var device = Device.Default;
Tensor.ManualSeed(options.Seed);

// N is batch size; D_in is input dimension; H is hidden dimension; D_out is output dimension.
var (N, D_in, H, D_out) = options.Sizes;

var x = Tensor.Randn([N, D_in], device);
var y = Tensor.Randn([N, D_out], device);

// requiresGrad: true: compute gradients with respect to these tensors in the backward pass.
var w1 = Tensor.Randn([D_in, H], device, requiresGrad: true);
var w2 = Tensor.Randn([H, D_out], device, requiresGrad: true);

float learning_rate = 1e-6f;
var clock = Stopwatch.StartNew();
TimeSpan warm = TimeSpan.Zero;
if (options.Eager)
{
    for (int t = 0; t < options.Steps; t++)
    {
        if (t == 1) { device.Synchronize(); warm = clock.Elapsed; }

        // Forward pass: the same operations as a hand-written forward pass, no intermediates kept by hand.
        var y_pred = x.MatMul(w1).Clamp(min: 0).MatMul(w2);

        // loss is a scalar tensor; loss.Item() is its value.
        var loss = (y_pred - y).Pow(2).Sum();
        if (t % 100 == 99)
            Console.WriteLine($"{t} {loss.Item()}");

        // Gradient of loss with respect to every tensor with requiresGrad: w1.Grad and w2.Grad.
        loss.Backward();

        // Gradient descent by hand, outside autograd.
        using (Autograd.NoGrad())
        {
            w1.SubInPlace(learning_rate * w1.Grad!);
            w2.SubInPlace(learning_rate * w2.Grad!);

            // Zero the gradients after updating the weights.
            w1.Grad!.ZeroInPlace();
            w2.Grad!.ZeroInPlace();
        }
    }
}
else
{
    // The same step, traced once: forward, generated backward and the SGD update replay on the device.
    using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(),
        optimizer: new Sgd([w1, w2], learning_rate));
    for (int t = 0; t < options.Steps; t++)
    {
        if (t == 1) { device.Synchronize(); warm = clock.Elapsed; }
        var loss = step.Run();
        if (t % 100 == 99)
            Console.WriteLine($"{t} {loss.Item()}");
    }
    device.Synchronize();
    Console.WriteLine($"compiled: {step.Nodes} nodes, {step.LaunchesPerStep} launches per step, CUDA graphs: {step.UsesCudaGraphs}, {step.PlannedBytes:N0} bytes planned");
}
device.Synchronize();
var total = clock.Elapsed;
int timed = Math.Max(1, options.Steps - 1);
Console.WriteLine($"device: {device}, mode: {(options.Eager ? "eager" : "compiled")}");
Console.WriteLine($"{options.Steps} steps in {total.TotalSeconds:F2} s; {(total - warm).TotalMilliseconds * 1000 / timed:F1} us/step after the first (which compiles the kernels: {warm.TotalMilliseconds:F0} ms)");

internal sealed record Options(int Steps, string? Device, (int N, int DIn, int H, int DOut) Sizes, ulong Seed, bool Eager = false)
{
    public static Options Parse(string[] args)
    {
        var o = new Options(500, null, (64, 1000, 100, 10), 0);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--steps": o = o with { Steps = int.Parse(Next()) }; break;
                case "--device": o = o with { Device = Next() }; break;
                case "--seed": o = o with { Seed = ulong.Parse(Next()) }; break;
                case "--eager": o = o with { Eager = true }; break;
                case "--sizes":
                    var s = Next().Split(',').Select(int.Parse).ToArray();
                    if (s.Length != 4) throw new ArgumentException("--sizes takes N,D_in,H,D_out");
                    o = o with { Sizes = (s[0], s[1], s[2], s[3]) };
                    break;
                case "-h" or "--help":
                    Console.WriteLine("usage: TwoLayerNet [--steps 500] [--device cpu|cuda|opencl] [--sizes 64,1000,100,10] [--seed 0] [--eager]");
                    Environment.Exit(0);
                    break;
                default: throw new ArgumentException($"unknown option {args[i]} (try --help)");
            }
        }
        return o;
    }
}
