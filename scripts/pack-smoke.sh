#!/bin/bash
# Packs Autograd.Core and Autograd.Kernels, then builds a fresh console project that takes them
# from a local folder (not from the repository) and trains the seed for 200 steps.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A version no public feed has, so restore can only find these packages in the local folder.
version="0.1.0-smoke$(date +%s)"
# One Release build (nothing to do after CI's example run, which built the same), packed as it is:
# building again for the version stamp took ~20 s, and the version that matters here is the packages'.
dotnet build "$root/Autograd.Core/Autograd.Core.csproj" -c Release --nologo -v q
for p in Autograd.Kernels Autograd.Core; do
  dotnet pack "$root/$p/$p.csproj" -c Release --no-build -o "$work/packages" --nologo -v q -p:Version="$version"
done
ls "$work/packages"
mkdir -p "$work/consumer"
cd "$work/consumer"
cat > nuget.config <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="local" value="$work/packages" />
  </packageSources>
</configuration>
XML
cat > consumer.csproj <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><Nullable>enable</Nullable><ImplicitUsings>enable</ImplicitUsings></PropertyGroup>
  <ItemGroup><PackageReference Include="Autograd.Core" Version="$version" /></ItemGroup>
</Project>
XML
cat > Program.cs <<'CS'
using AutogradNet;
using AutogradNet.Optim;
Tensor.ManualSeed(0);
var x = Tensor.Randn([64, 1000]); var y = Tensor.Randn([64, 10]);
var w1 = Tensor.Randn([1000, 100], requiresGrad: true); var w2 = Tensor.Randn([100, 10], requiresGrad: true);
using var step = Graph.Compile(() => (x.MatMul(w1).Clamp(min: 0).MatMul(w2) - y).Pow(2).Sum(), new Sgd([w1, w2], 1e-6f));
float first = step.Run().Item();
var losses = step.Run(steps: 199).ToArray();
Console.WriteLine($"loss {first} -> {losses[^1]} on {Device.Default}");
if (!(losses[^1] < first / 10)) { Console.Error.WriteLine("the packaged library did not train"); return 1; }
return 0;
CS
dotnet run -c Release --nologo --property:RestorePackagesPath="$work/nuget-cache"
# The package carries the README, the XML docs and the kernels' package as a dependency.
unzip -l "$work/packages/Autograd.Core.$version.nupkg" | grep -E "README.md|Autograd.Core.xml|Autograd.Core.dll"
unzip -p "$work/packages/Autograd.Core.$version.nupkg" Autograd.Core.nuspec | grep -E "Autograd.Kernels|<license|<readme|<repository" || true
echo "pack-smoke: ok"
