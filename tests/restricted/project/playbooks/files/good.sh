#!/bin/sh
echo good
