// Progress: a live bar (Spectre.Console) when the terminal is interactive; plain lines otherwise, so
// CI logs read like the seed's output (`t loss` every 100 steps).
using Spectre.Console;

namespace AutogradNet.Examples;

internal abstract class Report
{
    public static Report Create(int steps) =>
        !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive ? new Bar(steps) : new Plain();

    public abstract void Checkpoint(int step, float loss);

    public abstract void Advance(int done);

    public abstract void Line(string text);

    public virtual void Done() { }

    private sealed class Plain : Report
    {
        public override void Checkpoint(int step, float loss) => Console.WriteLine($"{step} {loss}");

        public override void Advance(int done) { }

        public override void Line(string text) => Console.WriteLine(text);
    }

    private sealed class Bar : Report
    {
        private readonly ProgressTask _task;
        private readonly Task _render;
        private readonly TaskCompletionSource _finished = new();

        public Bar(int steps)
        {
            var ready = new TaskCompletionSource<ProgressTask>();
            _render = AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .StartAsync(async ctx =>
                {
                    ready.SetResult(ctx.AddTask("training", maxValue: steps));
                    await _finished.Task;
                });
            _task = ready.Task.Result;
        }

        public override void Checkpoint(int step, float loss) =>
            AnsiConsole.MarkupLine($"[grey]{step}[/] {loss}");

        public override void Advance(int done)
        {
            _task.Value = done;
            _task.Description = $"step {done}";
        }

        public override void Line(string text) => AnsiConsole.WriteLine(text);

        public override void Done()
        {
            _task.Value = _task.MaxValue;
            _finished.TrySetResult();
            _render.Wait();
        }
    }
}
