package ortlib

import (
	"errors"
	"strings"
	"testing"
)

func TestFindExplicitMissing(t *testing.T) {
	_, err := Find("/nonexistent/libonnxruntime.so.1")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find(missing) = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "make setup") {
		t.Errorf("error %q does not say how to install", err)
	}
}

func TestInitLoadsInstalledLibrary(t *testing.T) {
	p, err := Init("")
	if err != nil {
		t.Fatalf("Init: %v (the setup step installs the library)", err)
	}
	if p == "" {
		t.Fatal("Init returned an empty path")
	}
	if v := RuntimeVersion(); v != Version {
		t.Errorf("RuntimeVersion = %q, want %q", v, Version)
	}
	if _, err := Init(p); err != nil {
		t.Errorf("second Init with same path: %v", err)
	}
	if _, err := Init("/other/lib.so"); !errors.Is(err, ErrOtherLibrary) {
		t.Errorf("Init(other) = %v, want ErrOtherLibrary", err)
	}
}
