// Grad mode: whether ops record nodes for backward. Per thread, like PyTorch's.
namespace AutogradNet;

/// <summary>Controls of autograd: <c>using (Autograd.NoGrad()) { ... }</c>.</summary>
public static class Autograd
{
    [ThreadStatic] private static bool _disabled;

    /// <summary>Whether ops on this thread record history for Backward.</summary>
    public static bool IsGradEnabled => !_disabled;

    /// <summary>
    /// Turns recording off on this thread until the returned scope is disposed, which restores the
    /// previous mode (scopes nest). In-place updates of parameters belong inside it.
    /// </summary>
    public static IDisposable NoGrad() => new ModeScope(enabled: false);

    /// <summary>Turns recording back on inside a NoGrad scope, until the returned scope is disposed.</summary>
    public static IDisposable EnableGrad() => new ModeScope(enabled: true);

    private sealed class ModeScope : IDisposable
    {
        private readonly bool _previousDisabled;
        private bool _done;

        public ModeScope(bool enabled)
        {
            _previousDisabled = _disabled;
            _disabled = !enabled;
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _disabled = _previousDisabled;
        }
    }
}
