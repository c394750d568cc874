module example.com/Hello

go 1.20
