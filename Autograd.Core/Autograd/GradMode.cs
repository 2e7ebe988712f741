// Grad mode: whether ops record nodes for backward. Per thread, like PyTorch's.
namespace AutogradNet;

/// <summary>Controls of autograd: <c>using (Autograd.NoGrad()) { ... }</c>.</summary>
public static class Autograd
{
    [ThreadStatic] private static bool _disabled;
    [ThreadStatic] private static int _anomaly;

    /// <summary>Whether ops on this thread check their outputs for NaN and Inf.</summary>
    public static bool IsAnomalyDetectionEnabled => _anomaly > 0;

    /// <summary>
    /// Until the returned scope is disposed, every eager op on this thread (forward and backward)
    /// reads its output back and throws <see cref="AnomalyException"/> naming the first op whose
    /// finite inputs gave NaN or Inf. Slow (one host read per op): for debugging.
    /// </summary>
    public static IDisposable DetectAnomaly()
    {
        _anomaly++;
        return new Undo(() => _anomaly--);
    }

    private sealed class Undo(Action undo) : IDisposable
    {
        private Action? _undo = undo;

        public void Dispose()
        {
            _undo?.Invoke();
            _undo = null;
        }
    }

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
