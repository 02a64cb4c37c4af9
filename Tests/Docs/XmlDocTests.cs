using System.Reflection;
using System.Xml.Linq;
using NUnit.Framework;

namespace AttnCore.Tests.Docs;

/// <summary>
/// The four libraries document their public API: each ships an XML documentation file (GenerateDocumentationFile)
/// with an entry for every public type and member. The compiler enforces it through CS1591 as an error; this test
/// fails if that setting is ever switched off for a library, and names what lost its documentation.
/// </summary>
[TestFixture, Category("Docs")]
public class XmlDocTests
{
    private static readonly Assembly[] Libraries =
    [
        typeof(AttnCore.Kernels.Cpu.Gemm).Assembly,
        typeof(Tensor).Assembly,
        typeof(AttnCore.DerivativeRules).Assembly,
        typeof(AttnCore.Models.Nn.Module).Assembly,
        typeof(AttnCore.Distributed.DataParallel).Assembly,
    ];

    // Doc IDs use '.' for nested types and keep the generic arity (`1); a member is matched by its type and name,
    // so one documented overload does not hide an undocumented one only when both are compiled from one comment.
    private static string TypeId(Type t) => (t.FullName ?? t.Name).Replace('+', '.');

    // Enums whose values keep a narrow '#pragma warning disable CS1591' with its reason in the source: OpKind's values
    // name the Tensor methods that record them (the GPU kernels switch on UnaryOp/BinaryOp themselves, documented value by value).
    private static readonly HashSet<Type> SelfDescribingEnums = [typeof(OpKind)];

    private static readonly BindingFlags Declared = BindingFlags.Public | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;

    [TestCaseSource(nameof(Libraries))]
    public void Every_public_type_and_member_of_a_library_has_an_xml_doc_entry(Assembly library)
    {
        string xmlPath = Path.ChangeExtension(library.Location, ".xml");
        Assert.That(File.Exists(xmlPath), Is.True, $"{library.GetName().Name} ships no XML documentation file ({xmlPath})");
        var ids = XDocument.Load(xmlPath).Descendants("member").Select(m => (string)m.Attribute("name")!).ToHashSet(StringComparer.Ordinal);
        var prefixes = ids.Select(id => id.Split('(')[0]).ToHashSet(StringComparer.Ordinal);

        var missing = new List<string>();
        foreach (var type in library.GetExportedTypes())
        {
            string typeId = TypeId(type);
            if (!ids.Contains("T:" + typeId)) missing.Add("T:" + typeId);
            bool isEnum = type.IsEnum;
            foreach (var member in type.GetMembers(Declared))
            {
                if (member is MethodBase { IsSpecialName: true } special and not ConstructorInfo && !special.Name.StartsWith("op_", StringComparison.Ordinal)) continue; // accessors: their property or event is checked
                if (type.IsSubclassOf(typeof(Delegate))) continue; // Invoke and friends are the runtime's
                if (member is Type) continue; // nested types are exported types themselves
                if (isEnum && (member.Name == "value__" || SelfDescribingEnums.Contains(type))) continue;
                // A struct's parameterless constructor, a static one, and the default constructor the compiler adds to a class
                // that declares none have no source to carry a comment.
                if (member is ConstructorInfo c && (c.IsStatic || c.GetParameters().Length == 0 && (type.IsValueType || type.GetConstructors().Length == 1))) continue;
                if (member.GetCustomAttribute<System.Runtime.CompilerServices.CompilerGeneratedAttribute>() is not null) continue;
                string prefix = member switch
                {
                    ConstructorInfo => "M:" + typeId + ".#ctor",
                    MethodInfo => "M:" + typeId + "." + member.Name,
                    PropertyInfo => "P:" + typeId + "." + member.Name,
                    FieldInfo => "F:" + typeId + "." + member.Name,
                    EventInfo => "E:" + typeId + "." + member.Name,
                    _ => "",
                };
                if (prefix.Length == 0) continue;
                // Generic methods carry ``N after the name; records' synthesized members (Equals, Deconstruct ...) have none.
                if (!prefixes.Contains(prefix) && !prefixes.Any(p => p.StartsWith(prefix + "``", StringComparison.Ordinal)) && !IsSynthesized(type, member))
                    missing.Add(prefix);
            }
        }
        Assert.That(missing.Distinct().ToList(), Is.Empty, $"{library.GetName().Name}: public API without an XML doc comment");
    }

    // Members the compiler writes for records and enums, which no source comment can document.
    private static bool IsSynthesized(Type type, MemberInfo member)
    {
        string[] recordMembers = ["Equals", "GetHashCode", "ToString", "Deconstruct", "PrintMembers", "<Clone>$", "EqualityContract", "op_Equality", "op_Inequality"];
        bool isRecord = type.GetMethod("<Clone>$") is not null || type.GetMethod("PrintMembers", BindingFlags.NonPublic | BindingFlags.Instance) is not null;
        if (isRecord && recordMembers.Contains(member.Name)) return true;
        // A record's primary-constructor properties are documented by its <param> tags, not by entries of their own.
        if (isRecord && member is PropertyInfo && type.GetConstructors().Any(c => c.GetParameters().Any(p => p.Name == member.Name))) return true;
        return false;
    }
}
