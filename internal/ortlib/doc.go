// Package ortlib finds and initializes the ONNX Runtime shared library.
//
// ONNX Runtime is a C library loaded at run time (dlopen) by
// github.com/yalue/onnxruntime_go. The setup step (`make setup`, which runs
// .ci/setup.sh) takes the official build from the onnxruntime-node npm
// package, checks its sha256 and places it in the user cache directory.
// Find resolves the library in this order: an explicit path (the --ort-lib
// flag), the ATELIER_ORT_LIB environment variable, then that cache.
//
// ONNX Runtime keeps one environment per process. Init is therefore the one
// place that touches process-wide state: it is safe to call from many
// goroutines and many packages; the first successful call wins and later
// calls with another path fail with ErrOtherLibrary.
//
// This package does not load models or run inference; see package scoring.
package ortlib
