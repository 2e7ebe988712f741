// An environment variable set for one test (or one call); Dispose puts back the value it found.
namespace AutogradNet.Tests.Support;

internal sealed class EnvironmentScope(string variable) : IDisposable
{
    private readonly string? _saved = Environment.GetEnvironmentVariable(variable);

    /// <summary>Sets the variable (null unsets it) until the scope is disposed.</summary>
    public void Set(string? value) => Environment.SetEnvironmentVariable(variable, value);

    public void Dispose() => Environment.SetEnvironmentVariable(variable, _saved);
}
