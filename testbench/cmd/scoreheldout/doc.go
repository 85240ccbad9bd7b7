// Command scoreheldout scores the sample's held-out rows through a scoring
// endpoint and prints the accuracy the endpoint achieved. The demo uses it
// against an edge agent:
//
//	go run ./testbench/cmd/scoreheldout --url http://127.0.0.1:8080 --model digits --csv heldout.csv
//
// The CSV has the sample's format (64 pixel values, then the label, no
// header). Rows are sent as Open Inference Protocol v2 infer requests of
// --batch rows each (input "pixels", FP32 [n, 64]); the predicted class is
// the "label" output. It reads nothing else and changes nothing.
package main
