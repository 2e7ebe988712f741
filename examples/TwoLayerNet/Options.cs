// Command-line options of the example.
namespace AutogradNet.Examples;

internal sealed record Options(int Steps, string? Device, (int N, int DIn, int H, int DOut) Sizes, ulong Seed,
    bool Eager = false, string? Plot = null, string? Save = null, bool Help = false, bool Describe = false, bool Persistent = false, bool Chain = false, bool Rows = false)
{
    public const string Usage = """
        TwoLayerNet: the seed two-layer net (PyTorch's "Tensors and autograd" example) trained with Autograd.

        usage: dotnet run -c Release --project examples/TwoLayerNet -- [options]

          --steps N              training steps (500)
          --device NAME          cpu | cuda | cuda:N | opencl (default: AUTOGRAD_DEVICE, else the best here)
          --sizes N,DIN,H,DOUT   batch, input, hidden and output sizes (64,1000,100,10)
          --seed S               random seed (0)
          --eager                run the PyTorch-style eager loop instead of the compiled step
          --persistent           run each compiled step as one persistent kernel (KernelHost.PersistentSteps)
          --chain                run the small products after h in h's launch (KernelHost.ChainTails)
          --rows                 run h, y with its loss, and dH block of rows by block in one launch (KernelHost.RowChains)
          --describe             print the compiled step's plan: fused kernels, launches, buffers
          --plot FILE.png        draw the loss curve
          --save FILE            save w1 and w2 as safetensors (PyTorch and Hugging Face read it)
          -h, --help             this text
        """;

    public static Options Parse(string[] args)
    {
        var o = new Options(500, null, (64, 1000, 100, 10), 0);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value (try --help)");
            switch (args[i])
            {
                case "--steps": o = o with { Steps = int.Parse(Next()) }; break;
                case "--device": o = o with { Device = Next() }; break;
                case "--seed": o = o with { Seed = ulong.Parse(Next()) }; break;
                case "--eager": o = o with { Eager = true }; break;
                case "--describe": o = o with { Describe = true }; break;
                case "--persistent": o = o with { Persistent = true }; break;
                case "--chain": o = o with { Chain = true }; break;
                case "--rows": o = o with { Rows = true }; break;
                case "--plot": o = o with { Plot = Next() }; break;
                case "--save": o = o with { Save = Next() }; break;
                case "--sizes":
                    var s = Next().Split(',').Select(int.Parse).ToArray();
                    if (s.Length != 4) throw new ArgumentException("--sizes takes N,D_in,H,D_out");
                    o = o with { Sizes = (s[0], s[1], s[2], s[3]) };
                    break;
                case "-h" or "--help": o = o with { Help = true }; break;
                default: throw new ArgumentException($"unknown option {args[i]} (try --help)");
            }
        }
        if (o.Steps < 1) throw new ArgumentException("--steps must be at least 1");
        if (o.Eager && o.Persistent) throw new ArgumentException("--persistent is for the compiled step; drop --eager");
        if (o.Eager && o.Chain) throw new ArgumentException("--chain is for the compiled step; drop --eager");
        if (o.Eager && o.Rows) throw new ArgumentException("--rows is for the compiled step; drop --eager");
        return o;
    }
}
