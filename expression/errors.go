package expression

// KeyError names the configuration key (below the plugin's own entry) that
// holds a faulty expression, e.g. "set.env" or "key". Err is usually a
// *CompileError.
//
// How the config loader prints it: a plugin's Validate or New may return a
// *KeyError, or several joined with errors.Join. For each, the loader
// prefixes Key with the plugin's path and, when errors.As finds a
// *CompileError, the expression's position:
//
//	sidelog.yaml:12: filters[1].set.env: line 1, column 5: unexpected token EOF
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *KeyError) Unwrap() error { return e.Err }

// CompileKey compiles the expression held by config key key; an error is a
// *KeyError wrapping a *CompileError.
func CompileKey(key, src string, kind Kind) (*Program, error) {
	p, err := Compile(src, kind)
	if err != nil {
		return nil, &KeyError{Key: key, Err: err}
	}
	return p, nil
}
