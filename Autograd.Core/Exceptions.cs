// Typed exceptions for misuse. Each message names the op, the shapes or devices involved, and the fix.
namespace AutogradNet;

/// <summary>Operands' shapes do not fit the op (non-broadcastable, wrong rank, inner sizes differ).</summary>
public sealed class ShapeMismatchException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What op, which shapes, and how to fix it.</param>
    public ShapeMismatchException(string message) : base(message) { }
}

/// <summary>Tensors on two different devices were combined in one op.</summary>
public sealed class DeviceMismatchException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What op, which devices, and how to fix it.</param>
    public DeviceMismatchException(string message) : base(message) { }
}

/// <summary>A device was asked for that this machine does not have or ILGPU cannot use.</summary>
public sealed class DeviceNotFoundException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was asked for and what exists.</param>
    public DeviceNotFoundException(string message) : base(message) { }
}

/// <summary>Autograd misuse: backward of a non-scalar without a gradient, a missing rule, a released graph.</summary>
public sealed class AutogradException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What went wrong and how to fix it.</param>
    public AutogradException(string message) : base(message) { }
}

/// <summary>Something the traced function of Graph.Compile did cannot become part of a static graph.</summary>
public sealed class GraphTraceException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What the function did and what to do instead.</param>
    public GraphTraceException(string message) : base(message) { }
}

/// <summary>A compiled step was given an input that differs from the traced signature.</summary>
public sealed class GraphSignatureException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">Which input, the expected and the actual shape and device.</param>
    public GraphSignatureException(string message) : base(message) { }
}

/// <summary>
/// A compiled step's replay failed on the device in a way the step recovered from (a persistent
/// kernel's grid barrier gave up); the message says what the results of that run are and what to do.
/// </summary>
public sealed class GraphReplayException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What failed, on which device, and the fix.</param>
    public GraphReplayException(string message) : base(message) { }
}

/// <summary>A device allocation failed or would pass the device's limit; nothing was allocated.</summary>
public sealed class DeviceOutOfMemoryException : OutOfMemoryException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The bytes asked, the device, what is in use, and what to do.</param>
    /// <param name="requestedBytes">The bytes of the failed request.</param>
    /// <param name="inner">The driver's error, if any.</param>
    public DeviceOutOfMemoryException(string message, long requestedBytes, Exception? inner = null) : base(message, inner)
    {
        RequestedBytes = requestedBytes;
    }

    /// <summary>The bytes of the failed request.</summary>
    public long RequestedBytes { get; }
}

/// <summary>An op produced NaN or Inf while <see cref="Autograd.DetectAnomaly"/> was on.</summary>
public sealed class AnomalyException : ArithmeticException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The op, its shapes, and what it produced.</param>
    public AnomalyException(string message) : base(message) { }
}
