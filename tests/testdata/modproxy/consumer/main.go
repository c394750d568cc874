package main

import hello "example.com/Hello"

func main() { println(hello.Hello()) }
