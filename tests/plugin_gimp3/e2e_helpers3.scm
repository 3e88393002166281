; Script-Fu helpers of the GIMP 3 end-to-end tests (GIMP 3.0 names of the 2.10 helpers in
; tests/plugin/e2e_helpers.scm; procedures return lists as in 2.10 Script-Fu).

; A new image of `type` (RGB or GRAY) w x h with one layer "base" of lw x lh at (ox, oy), filled
; with a horizontal gradient from (40 80 160) to (220 180 60). Returns (image layer).
(define (qw-make-image type w h lw lh ox oy)
  (let* ((img (car (gimp-image-new w h type)))
         (ltype (if (= type RGB) RGB-IMAGE GRAY-IMAGE))
         (layer (car (gimp-layer-new img "base" lw lh ltype 100 LAYER-MODE-NORMAL))))
    (gimp-image-insert-layer img layer 0 0)
    (gimp-layer-set-offsets layer ox oy)
    (gimp-context-set-foreground '(40 80 160))
    (gimp-context-set-background '(220 180 60))
    (gimp-drawable-edit-gradient-fill layer GRADIENT-LINEAR 0 FALSE 1 0 TRUE 0 0 lw 0)
    (list img layer)))

; Saves the flattened image (a duplicate) as raw PNM.
(define (qw-save-flat img path)
  (let* ((dup (car (gimp-image-duplicate img))))
    (gimp-image-flatten dup)
    (gimp-file-save RUN-NONINTERACTIVE dup path -1)
    (gimp-image-delete dup)))

; One line per layer, top first: name<TAB>x<TAB>y<TAB>w<TAB>h<TAB>has-mask
(define (qw-write-layers img path)
  (let* ((port (open-output-file path))
         (layers (car (gimp-image-get-layers img)))
         (n (vector-length layers)))
    (do ((i 0 (+ i 1))) ((= i n))
      (let* ((l (vector-ref layers i))
             (off (gimp-drawable-get-offsets l)))
        (display (car (gimp-item-get-name l)) port) (display "\t" port)
        (display (car off) port) (display "\t" port)
        (display (cadr off) port) (display "\t" port)
        (display (car (gimp-drawable-get-width l)) port) (display "\t" port)
        (display (car (gimp-drawable-get-height l)) port) (display "\t" port)
        (display (if (> (car (gimp-layer-get-mask l)) 0) 1 0) port)
        (newline port)))
    (close-output-port port)))

; Writes `text` into path.
(define (qw-mark path text)
  (let ((port (open-output-file path)))
    (display text port)
    (close-output-port port)))

; Decompose (issue #16). GIMP 3.0 Script-Fu gives booleans as 1/0 (or #t/#f in the v3 dialect).
(define (qw-true? v) (or (eq? v #t) (and (number? v) (= v 1))))

; The layer tree, depth first, top first at each level, one line per item:
; depth<TAB>name<TAB>x<TAB>y<TAB>w<TAB>h<TAB>has-alpha<TAB>is-group
(define (qw-write-tree img path)
  (let ((port (open-output-file path)))
    (define (walk items depth)
      (let ((n (vector-length items)))
        (do ((i 0 (+ i 1))) ((= i n))
          (let* ((l (vector-ref items i))
                 (off (gimp-drawable-get-offsets l))
                 (group (qw-true? (car (gimp-item-is-group l)))))
            (display depth port) (display "\t" port)
            (display (car (gimp-item-get-name l)) port) (display "\t" port)
            (display (car off) port) (display "\t" port)
            (display (cadr off) port) (display "\t" port)
            (display (car (gimp-drawable-get-width l)) port) (display "\t" port)
            (display (car (gimp-drawable-get-height l)) port) (display "\t" port)
            (display (if (qw-true? (car (gimp-drawable-has-alpha l))) 1 0) port)
            (display "\t" port)
            (display (if group 1 0) port)
            (newline port)
            (if group (walk (car (gimp-item-get-children l)) (+ depth 1)))))))
    (walk (car (gimp-image-get-layers img)) 0)
    (close-output-port port)))

; Saves the flattened image with only the items in `shown` visible (among `all`).
(define (qw-save-flat-showing img all shown path)
  (for-each (lambda (l) (gimp-item-set-visible l (if (member l shown) TRUE FALSE))) all)
  (qw-save-flat img path)
  (for-each (lambda (l) (gimp-item-set-visible l TRUE)) all))

; The children of a group, top first, as a list.
(define (qw-children group)
  (vector->list (car (gimp-item-get-children group))))

; Saves a drawable's own pixels at its size, exactly: a layer without its mask (RGB or RGBA) as
; PAM (`path` *.pam: GIMP 3's PNG export zeroes the colour of transparent pixels), a layer mask or
; channel (`gray` #t) as PGM (*.pgm).
(define (qw-save-drawable d gray path)
  (let* ((w (car (gimp-drawable-get-width d)))
         (h (car (gimp-drawable-get-height d)))
         (one (car (gimp-image-new w h (if gray GRAY RGB))))
         (copy (car (gimp-layer-new-from-drawable d one))))
    (gimp-image-insert-layer one copy 0 0)
    (gimp-layer-set-offsets copy 0 0)
    (if (> (car (gimp-layer-get-mask copy)) 0) (gimp-layer-remove-mask copy MASK-DISCARD))
    (gimp-file-save RUN-NONINTERACTIVE one path -1)
    (gimp-image-delete one)))
