package api

import (
	"errors"

	"github.com/sidelog/sidelog/output"
)

func permanent(msg string) error { return output.PermanentError(errors.New(msg)) }
