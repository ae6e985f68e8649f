package depcheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
)

// clockFuncs are the functions of package time that read or wait on the
// clock.
var clockFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"Tick": true, "NewTimer": true, "NewTicker": true, "AfterFunc": true,
}

// CheckSource reports what breaks the pure packages' rules in one of their
// non-test Go files: a call or reference to a clock function of package time
// (under whatever name the file imports it), a dot import of time (which
// would hide such calls), and imports of the network or the file system.
// Imports are read here as well as from the graph because the graph holds
// one build configuration only: a file built for another platform could
// import os.
func CheckSource(filename string, src []byte) ([]Violation, error) {
	fset := token.NewFileSet()
	// Object resolution stays on: a local variable named like the import
	// (time := ...) is not the package.
	f, err := parser.ParseFile(fset, filename, src, 0)
	if err != nil {
		return nil, fmt.Errorf("depcheck: %w", err)
	}
	var out []Violation
	timeNames := map[string]bool{}
	for _, spec := range f.Imports {
		path, err := strconv.Unquote(spec.Path.Value)
		if err != nil {
			return nil, fmt.Errorf("depcheck: %s: bad import %s", fset.Position(spec.Pos()), spec.Path.Value)
		}
		what := "import " + spec.Path.Value
		switch {
		case IsNetwork(path):
			out = append(out, Violation{Rule: RulePureNet, Pos: fset.Position(spec.Pos()).String(), What: what})
		case IsFileSystem(path):
			out = append(out, Violation{Rule: RulePureFS, Pos: fset.Position(spec.Pos()).String(), What: what})
		case path == "time":
			name := "time"
			if spec.Name != nil {
				name = spec.Name.Name
			}
			switch name {
			case "_":
			case ".":
				out = append(out, Violation{Rule: RulePureTime, Pos: fset.Position(spec.Pos()).String(),
					What: `import . "time" (hides clock calls from this check)`})
			default:
				timeNames[name] = true
			}
		}
	}
	if len(timeNames) == 0 {
		return out, nil
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		// An identifier the parser resolved is declared in this file
		// (a variable, a parameter), not the imported package.
		if x, ok := sel.X.(*ast.Ident); ok && x.Obj == nil && timeNames[x.Name] && clockFuncs[sel.Sel.Name] {
			what := "time." + sel.Sel.Name
			if x.Name != "time" {
				what += " (as " + x.Name + "." + sel.Sel.Name + ")"
			}
			out = append(out, Violation{Rule: RulePureTime, Pos: fset.Position(sel.Pos()).String(), What: what})
		}
		return true
	})
	return out, nil
}
