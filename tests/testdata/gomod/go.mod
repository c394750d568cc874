module example.com/gcptest

go 1.24
