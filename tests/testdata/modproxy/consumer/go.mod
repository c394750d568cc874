module example.com/consumer

go 1.21

require example.com/Hello v1.0.0
