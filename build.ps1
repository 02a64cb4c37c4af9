#!/usr/bin/env pwsh
# Thin wrapper over the dotnet commands the README gives (PowerShell 7, any OS).
#   ./build.ps1 build | test | demo | bench [op args...] | pack
param(
    [Parameter(Position = 0)]
    [ValidateSet('build', 'test', 'demo', 'bench', 'pack')]
    [string] $Task = 'build',
    [Parameter(Position = 1, ValueFromRemainingArguments = $true)]
    [string[]] $Rest = @()
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot

switch ($Task) {
    'build' { dotnet build -c Release }
    'test'  { dotnet test -c Release }
    'demo'  { dotnet run -c Release --project Cli -- demo @Rest }
    'bench' { dotnet run -c Release --project Cli -- bench @Rest }
    'pack'  {
        foreach ($p in 'Kernels/AttnCore.Kernels.csproj', 'Engine/AttnCore.Engine.csproj', 'Autograd/AttnCore.Autograd.csproj', 'Models/AttnCore.Models.csproj', 'Presentation/AttnCore.Presentation.csproj') {
            dotnet pack $p -c Release -o artifacts
            if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
        }
    }
}
exit $LASTEXITCODE
