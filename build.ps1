#!/usr/bin/env pwsh
# Thin wrapper over the dotnet commands the README gives (PowerShell 7, any OS).
#   ./build.ps1 build | test | demo | bench [op args...] | pack [folder]
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
        # Every packable project of the solution (the libraries and the attncore tool) into one folder:
        #   ./build.ps1 pack [folder (default artifacts)] [more dotnet pack options, e.g. --no-build]
        $out = 'artifacts'
        if ($Rest.Count -gt 0 -and -not $Rest[0].StartsWith('-')) { $out = $Rest[0]; $Rest = @($Rest | Select-Object -Skip 1) }
        dotnet pack AttnCore.sln -c Release -o $out @Rest
    }
}
exit $LASTEXITCODE
