module example.com/atelier-sample/train

go 1.26
