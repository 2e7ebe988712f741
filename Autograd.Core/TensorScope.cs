// Scopes: every tensor created on this thread while a scope is open is disposed when the scope
// closes, except those kept (moved to the enclosing scope, or out of all scopes). Tensors the
// library keeps for longer than a step (a leaf's Grad, optimizer state, a compiled step's buffers)
// are never owned by a scope.
namespace AutogradNet;

/// <summary>Disposes the tensors created inside it: <c>using var scope = Tensor.Scope();</c>.</summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;
    private readonly TensorScope? _outer;
    private readonly HashSet<Tensor> _owned = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    internal TensorScope()
    {
        _outer = _current;
        _current = this;
    }

    /// <summary>Tensors this scope will dispose.</summary>
    public int Count => _owned.Count;

    /// <summary>Keeps tensors alive past this scope: they move to the enclosing scope, if any.</summary>
    /// <param name="tensors">Tensors created inside this scope.</param>
    public void Keep(params Tensor[] tensors)
    {
        foreach (var t in tensors)
        {
            if (!_owned.Remove(t)) continue;
            t.OwnerScope = _outer;
            _outer?._owned.Add(t);
        }
    }

    /// <summary>Keeps one tensor alive past this scope and returns it.</summary>
    /// <param name="tensor">A tensor created inside this scope.</param>
    public Tensor Keep(Tensor tensor)
    {
        Keep([tensor]);
        return tensor;
    }

    /// <summary>Disposes every tensor created inside and not kept; restores the enclosing scope.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_current == this) _current = _outer;
        foreach (var t in _owned)
        {
            t.OwnerScope = null;
            t.Dispose();
        }
        _owned.Clear();
    }

    internal static void Adopt(Tensor t)
    {
        var s = _current;
        if (s == null) return;
        s._owned.Add(t);
        t.OwnerScope = s;
    }

    /// <summary>Takes a tensor out of any scope (the library keeps it for longer than a step).</summary>
    internal static Tensor Release(Tensor t)
    {
        t.OwnerScope?._owned.Remove(t);
        t.OwnerScope = null;
        return t;
    }
}
