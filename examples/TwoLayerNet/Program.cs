// The seed (../../shared/seed/two_layer_net.py, PyTorch's "Tensors and autograd" two-layer net),
// line for line in C#. By default the step is compiled once into a static graph and replayed
// (Graph.Compile); --eager runs the PyTorch-style loop instead. Run with --help for the options.
using System.Diagnostics;
using AutogradNet;
using AutogradNet.Examples;
using AutogradNet.IO;
using AutogradNet.Optim;

var options = Options.Parse(args);
if (options.Help)
{
    Console.WriteLine(Options.Usage);
    return 0;
}
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
var report = Report.Create(options.Steps);
var losses = new List<(int Step, float Loss)>();
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
            report.Checkpoint(t, loss.Item());
        if (options.Plot != null && t % 10 == 0)
            losses.Add((t, loss.Item()));

        // Gradient of loss with respect to every tensor with requiresGrad: w1.Grad and w2.Grad.
        loss.Backward();

        // Gradient descent by hand, outside autograd.
        using (Autograd.NoGrad())
        {
            w1 -= learning_rate * w1.Grad!;
            w2 -= learning_rate * w2.Grad!;

            // Zero the gradients after updating the weights.
            w1.Grad!.ZeroInPlace();
            w2.Grad!.ZeroInPlace();
        }
        report.Advance(t + 1);
    }
}
else
{
    // The same step, traced once: forward, generated backward and the SGD update replay on the device
    // (with --persistent, as one kernel a step, where the device's kernels allow it: --describe says).
    if (options.Persistent) device.Kernels.PersistentSteps = true;
    if (options.Chain) device.Kernels.ChainTails = true;
    if (options.Rows) device.Kernels.RowChains = true;
    using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(),
        optimizer: new Sgd([w1, w2], learning_rate));
    losses.Add((0, step.Run().Item()));
    warm = clock.Elapsed;
    int done = 1;
    while (done < options.Steps)
    {
        // Up to the next multiple of 100 steps without a host synchronisation, then one read of them all.
        int chunk = Math.Min(100 - done % 100, options.Steps - done);
        var history = step.Run(steps: chunk).ToArray();
        for (int i = 0; i < chunk; i++)
        {
            int t = done + i;
            if (t % 100 == 99) report.Checkpoint(t, history[i]);
            losses.Add((t, history[i]));
        }
        done += chunk;
        report.Advance(done);
    }
    report.Line($"compiled: {step.Nodes} nodes, {step.LaunchesPerStep} launches per step, CUDA graphs: {step.UsesCudaGraphs}, " +
        $"persistent kernel: {step.IsPersistent}, {step.PlannedBytes:N0} bytes planned");
    if (options.Describe) report.Line(step.Describe());
}
device.Synchronize();
var total = clock.Elapsed;
report.Done();
int timed = Math.Max(1, options.Steps - 1);
Console.WriteLine($"device: {device}, mode: {(options.Eager ? "eager" : "compiled")}");
Console.WriteLine($"{options.Steps} steps in {total.TotalSeconds:F2} s; {(total - warm).TotalMilliseconds * 1000 / timed:F1} us/step after the first (which compiles the kernels{(device.Kernels.Autotune && !options.Eager ? " and tunes them" : "")}: {warm.TotalMilliseconds:F0} ms)");

if (options.Save != null)
{
    Safetensors.Save(options.Save, new Dictionary<string, Tensor> { ["w1"] = w1, ["w2"] = w2 },
        new Dictionary<string, string> { ["source"] = "examples/TwoLayerNet", ["steps"] = options.Steps.ToString() });
    Console.WriteLine($"saved w1 [{string.Join(", ", w1.Shape)}] and w2 [{string.Join(", ", w2.Shape)}] to {options.Save}");
}
if (options.Plot != null)
{
    LossPlot.Save(options.Plot, losses);
    Console.WriteLine($"plotted {losses.Count} losses to {options.Plot}");
}
return 0;
